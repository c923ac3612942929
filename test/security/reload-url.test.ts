import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { applyPatch } from 'rfc6902';
import { ANNOTATIONS } from '../../src/injection/annotations.ts';
import { DEFAULT_INJECTOR_CONFIG, type InjectorConfig } from '../../src/injection/config.ts';
import { review, type AdmissionReviewResponse } from '../../src/webhook/admission.ts';

/**
 * Reload URLs through the whole admission path: only http(s), only loopback hosts unless the cluster admin allows
 * any, and an accepted URL reaches the sidecar as one normalised argument that cannot smuggle other flags.
 */

const SAMPLE = JSON.parse(
  await readFile(new URL('../fixtures/admission-review.json', import.meta.url), 'utf8'),
) as {
  request: { object: { metadata: { annotations: Record<string, string> }; spec: unknown } };
};

function reviewWith(
  url: string,
  config: Partial<InjectorConfig> = {},
): { response: AdmissionReviewResponse['response']; args: string[] } {
  const body = structuredClone(SAMPLE);
  body.request.object.metadata.annotations[ANNOTATIONS.reloadUrl] = url;
  const answer = review(body, 'annotation', { ...DEFAULT_INJECTOR_CONFIG, ...config });
  assert.equal(answer.statusCode, 200);
  if (answer.statusCode !== 200) throw new Error('unreachable');
  const { response } = answer.body;
  if (!response.patch) return { response, args: [] };
  const pod = structuredClone(body.request.object) as {
    spec: { initContainers?: Array<{ name: string; args: string[] }> };
  };
  applyPatch(pod, JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as never);
  const sidecar = pod.spec.initContainers?.find((c) => c.name === 'config-reloader');
  assert.ok(sidecar, 'the sidecar was added');
  return { response, args: sidecar.args };
}

function assertDenied(url: string, config: Partial<InjectorConfig> = {}, why: RegExp): void {
  const { response } = reviewWith(url, config);
  assert.equal(response.allowed, false, `${url} was accepted`);
  assert.equal(response.patch, undefined);
  assert.match(response.status?.message ?? '', new RegExp(ANNOTATIONS.reloadUrl.replace(/[./]/g, '\\$&')));
  assert.match(response.status?.message ?? '', why);
}

void describe('reload URLs from pod annotations', () => {
  void it('by default only loopback hosts: other pods, Services, node and cloud metadata addresses are denied', () => {
    for (const url of [
      'http://10.0.0.1:8080/-/reload',
      'http://kubernetes.default.svc/api',
      'http://prometheus.monitoring.svc.cluster.local:9090/-/reload',
      'http://169.254.169.254/latest/meta-data/',
      'http://[fd00::1]/reload',
      'http://[::ffff:10.0.0.1]/reload',
      'http://0.0.0.0:8080/',
      'http://localhost.attacker.example/',
      'http://127.0.0.1.nip.io/',
    ]) {
      assertDenied(url, {}, /loopback/);
    }
  });

  void it('only http and https, whatever the host policy', () => {
    for (const config of [{}, { allowedReloadHosts: 'any' as const }]) {
      for (const url of [
        'file:///var/run/secrets/kubernetes.io/serviceaccount/token',
        'ftp://127.0.0.1/',
        'gopher://127.0.0.1:6379/_x',
        'unix:/run/docker.sock',
        'javascript:alert(1)',
        'data:text/plain,x',
      ]) {
        assertDenied(url, config, /http or https|not a valid URL/);
      }
    }
  });

  void it('never with credentials, and never echoes them', () => {
    const { response } = reviewWith('http://admin:pa55word@127.0.0.1:8080/reload');
    assert.equal(response.allowed, false);
    assert.doesNotMatch(JSON.stringify(response), /pa55word/);
  });

  void it('an accepted URL reaches the sidecar as exactly one normalised --reload-url argument', () => {
    for (const [given, normalised] of [
      ['http://127.0.0.1:8429/-/reload', 'http://127.0.0.1:8429/-/reload'],
      ['HTTP://LOCALHOST:8080/reload', 'http://localhost:8080/reload'],
      ['http://127.1:9090/-/reload', 'http://127.0.0.1:9090/-/reload'],
      ['https://[::1]:8443/reload', 'https://[::1]:8443/reload'],
      // Tabs and newlines are dropped by URL parsing, and spaces are escaped: no second argument can appear.
      [
        'http://127.0.0.1:8080/reload\n--source=secret/other=/tmp/x',
        'http://127.0.0.1:8080/reload--source=secret/other=/tmp/x',
      ],
      [
        'http://127.0.0.1:8080/re load --reload-url=http://10.0.0.1/',
        'http://127.0.0.1:8080/re%20load%20--reload-url=http://10.0.0.1/',
      ],
    ]) {
      const { response, args } = reviewWith(given!);
      assert.equal(response.allowed, true, given);
      assert.deepEqual(
        args.filter((a) => a.startsWith('--reload-url')),
        [`--reload-url=${normalised}`],
      );
      assert.equal(args.filter((a) => a.startsWith('--source')).length, 1, "only the pod's own source");
    }
  });

  void it('with allowedReloadHosts "any", a cluster admin can let pods call other hosts over http(s)', () => {
    const { response, args } = reviewWith('http://prometheus.monitoring.svc:9090/-/reload', {
      allowedReloadHosts: 'any',
    });
    assert.equal(response.allowed, true);
    assert.ok(args.includes('--reload-url=http://prometheus.monitoring.svc:9090/-/reload'));
  });

  void it('the reload method is one of GET, POST, PUT', () => {
    const body = structuredClone(SAMPLE);
    body.request.object.metadata.annotations[ANNOTATIONS.reloadMethod] = 'DELETE';
    const answer = review(body, 'annotation', DEFAULT_INJECTOR_CONFIG);
    assert.equal(answer.statusCode === 200 && answer.body.response.allowed, false);
  });
});
