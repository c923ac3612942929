/**
 * Pods and AdmissionReviews of a given size for the admission and scaling sections. A pod has C containers and
 * V volumes: the service-account token volume and a scratch emptyDir (when V allows), the rest configMap and
 * secret volumes in turn; data volume k is mounted by container k mod C only, so the input grows linearly with
 * C and V (no container mounts every volume).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  apiAccessVolume,
  TOKEN_MOUNT_PATH,
} from '../../test/support/kube-apiserver/service-account-admission.ts';
import { REPO_ROOT } from './paths.ts';

export type SizeName = 'small' | 'typical' | 'large';

export const SIZES: Record<SizeName, { containers: number; volumes: number; description: string }> = {
  small: {
    containers: 1,
    volumes: 2,
    description: 'test/fixtures/admission-review.json: 1 container, a configMap and the token volume',
  },
  typical: {
    containers: 3,
    volumes: 10,
    description: '3 containers, 10 volumes (5 configMap, 3 secret, emptyDir, token)',
  },
  large: {
    containers: 30,
    volumes: 200,
    description: '30 containers, 200 volumes (99 configMap, 99 secret, emptyDir, token)',
  },
};

type Json = Record<string, unknown>;

export function makePod(containers: number, volumes: number, label = `c${containers}-v${volumes}`): Json {
  const vols: Json[] = [];
  const hasToken = volumes >= 2;
  if (hasToken) {
    vols.push(apiAccessVolume('kube-api-access-x7k2p'));
  }
  if (volumes >= 3) vols.push({ name: 'scratch', emptyDir: {} });
  const dataVolumes: string[] = [];
  for (let k = 0; vols.length < volumes; k++) {
    const name = `data-${k}`;
    dataVolumes.push(name);
    vols.push(
      k % 2 === 0
        ? { name, configMap: { name: `app-config-${k}`, defaultMode: 420 } }
        : {
            name,
            secret: {
              secretName: `app-secret-${k}`,
              defaultMode: 420,
              items: [
                { key: 'tls.crt', path: 'tls.crt' },
                { key: 'tls.key', path: 'tls.key', mode: 256 },
              ],
            },
          },
    );
  }
  const list: Json[] = [];
  for (let j = 0; j < containers; j++) {
    const mounts: Json[] = [];
    dataVolumes.forEach((name, k) => {
      if (k % containers === j) mounts.push({ name, mountPath: `/etc/app/${name}`, readOnly: true });
    });
    if (j === 0 && volumes >= 3) mounts.push({ name: 'scratch', mountPath: '/tmp' });
    if (hasToken) mounts.push({ name: 'kube-api-access-x7k2p', mountPath: TOKEN_MOUNT_PATH, readOnly: true });
    list.push({
      name: `app-${j}`,
      image: `registry.example.com/team/app-${j}:v1.2.${j}`,
      args: [`--config=/etc/app/data-${j}/config.yaml`, '--log-level=info'],
      ports: [{ name: `http-${j}`, containerPort: 8080 + j, protocol: 'TCP' }],
      env: [
        { name: 'APP_ENV', value: 'production' },
        { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      ],
      resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } },
      volumeMounts: mounts,
    });
  }
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: `bench-${label}-7d9f8c6b5-`,
      namespace: 'shop',
      labels: { app: 'bench', 'bench-size': label },
      annotations: {
        'config-reloader.io/inject': 'true',
        'config-reloader.io/reload-url': 'http://127.0.0.1:8080/-/reload',
      },
    },
    spec: { serviceAccountName: 'bench', containers: list, volumes: vols },
  };
}

export function fixtureReview(): Json {
  return JSON.parse(
    readFileSync(join(REPO_ROOT, 'test', 'fixtures', 'admission-review.json'), 'utf8'),
  ) as Json;
}

/** The AdmissionReview the API server would send for `pod` (the fixture's envelope, a fixed uid). */
export function reviewFor(pod: Json, uid: string): Json {
  const review = fixtureReview();
  const request = review.request as Json;
  return { ...review, request: { ...request, uid, object: pod } };
}

export function reviewOfSize(size: SizeName): Json {
  if (size === 'small') {
    const review = fixtureReview();
    const pod = (review.request as Json).object as Json;
    ((pod.metadata as Json).labels as Json)['bench-size'] = 'small';
    return review;
  }
  const { containers, volumes } = SIZES[size];
  return reviewFor(
    makePod(containers, volumes, size),
    `00000000-0000-4000-8000-00000000${size === 'typical' ? '0003' : '0030'}`,
  );
}
