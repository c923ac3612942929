import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { applyPatch } from 'rfc6902';
import { DEFAULT_INJECTOR_CONFIG, type InjectorConfig } from '../../src/injection/config.ts';
import { encodeReview, review, type AdmissionReviewResponse } from '../../src/webhook/admission.ts';
import { validatePod } from '../support/pod-validation.ts';

const SAMPLE = readFileSync(new URL('../fixtures/admission-review.json', import.meta.url), 'utf8');
const sample = (): {
  apiVersion: string;
  kind: string;
  request: Record<string, unknown> & { object: Record<string, any> };
} => JSON.parse(SAMPLE);

function ok(answer: ReturnType<typeof review>): AdmissionReviewResponse['response'] {
  assert.equal(answer.statusCode, 200, answer.statusCode === 400 ? answer.message : '');
  return (answer as { body: AdmissionReviewResponse }).body.response;
}

describe('review: the AdmissionReview envelope', () => {
  for (const [what, body, needle] of [
    ['a non-object body', 'hello', 'not a JSON object'],
    ['an array', [], 'not a JSON object'],
    ['another kind', { ...sample(), kind: 'ConversionReview' }, 'not AdmissionReview'],
    [
      'admission.k8s.io/v1beta1',
      { ...sample(), apiVersion: 'admission.k8s.io/v1beta1' },
      'admissionReviewVersions: [v1]',
    ],
    ['no request', { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }, 'no request object'],
    [
      'a request without uid',
      { ...sample(), request: { ...sample().request, uid: undefined } },
      'request.uid',
    ],
    [
      'a Pod CREATE without object',
      { ...sample(), request: { ...sample().request, object: null } },
      'request.object',
    ],
  ] as const) {
    it(`answers 400 with a message for ${what}`, () => {
      const answer = review(body, 'annotation', DEFAULT_INJECTOR_CONFIG);
      assert.equal(answer.statusCode, 400);
      assert.match((answer as { message: string }).message, new RegExp(needle.replace(/[[\]]/g, '\\$&')));
    });
  }

  it('echoes the uid and injects an opted-in pod with a base64 JSON patch that yields a valid pod', () => {
    const body = sample();
    const res = ok(review(body, 'annotation', DEFAULT_INJECTOR_CONFIG));
    assert.equal(res.uid, body.request.uid);
    assert.equal(res.allowed, true);
    assert.equal(res.patchType, 'JSONPatch');
    const ops = JSON.parse(Buffer.from(res.patch as string, 'base64').toString('utf8'));
    const pod = structuredClone(body.request.object);
    const errors = applyPatch(pod, ops).filter((e) => e !== null);
    assert.deepEqual(errors, []);
    assert.deepEqual(validatePod(pod), []);
    assert.equal(pod.metadata.annotations['config-reloader.io/status'], 'injected');
    assert.ok(pod.spec.initContainers.some((c: { name: string }) => c.name === 'config-reloader'));
  });

  it('gives the same answer for a dry run (the webhook has no side effects)', () => {
    const wet = ok(review(sample(), 'annotation', DEFAULT_INJECTOR_CONFIG));
    const dry = sample();
    dry.request.dryRun = true;
    const answer = review(dry, 'annotation', DEFAULT_INJECTOR_CONFIG);
    assert.deepEqual(ok(answer), wet);
    assert.equal(answer.statusCode === 200 && answer.summary.dryRun, true);
  });

  for (const [what, change] of [
    ['an UPDATE', { operation: 'UPDATE' }],
    ['a DELETE', { operation: 'DELETE' }],
    ['a non-Pod object', { kind: { group: 'apps', version: 'v1', kind: 'Deployment' } }],
    ['a subresource', { subResource: 'status' }],
  ] as const) {
    it(`allows ${what} without a patch`, () => {
      const body = sample();
      Object.assign(body.request, change);
      const answer = review(body, 'annotation', DEFAULT_INJECTOR_CONFIG);
      const res = ok(answer);
      assert.equal(res.allowed, true);
      assert.equal(res.patch, undefined);
      assert.equal(answer.statusCode === 200 && answer.summary.decision, 'skipped');
    });
  }

  it('allows a pod that did not opt in without a patch', () => {
    const body = sample();
    delete body.request.object.metadata.annotations['config-reloader.io/inject'];
    const res = ok(review(body, 'annotation', DEFAULT_INJECTOR_CONFIG));
    assert.deepEqual([res.allowed, res.patch], [true, undefined]);
  });

  it('injects through the namespace route without the pod annotation', () => {
    const body = sample();
    delete body.request.object.metadata.annotations['config-reloader.io/inject'];
    const res = ok(review(body, 'namespace', DEFAULT_INJECTOR_CONFIG));
    assert.equal(res.patchType, 'JSONPatch');
  });

  it('denies invalid opt-in configuration with a message that names the annotation', () => {
    const body = sample();
    body.request.object.metadata.annotations['config-reloader.io/reload-url'] = 'ftp://127.0.0.1/reload';
    const answer = review(body, 'annotation', DEFAULT_INJECTOR_CONFIG);
    const res = ok(answer);
    assert.equal(res.allowed, false);
    assert.equal(res.status?.code, 400);
    assert.match(res.status?.message ?? '', /config-reloader\.io\/reload-url/);
    assert.equal(answer.statusCode === 200 && answer.summary.decision, 'denied');
  });

  it('denies with one message that lists every invalid annotation, each with its value and fix', () => {
    const body = sample();
    Object.assign(body.request.object.metadata.annotations, {
      'config-reloader.io/reload-url': 'ftp://127.0.0.1/reload',
      'config-reloader.io/port': 'none',
      'config-reloader.io/cpu-request': 'lots',
    });
    const answer = review(body, 'annotation', DEFAULT_INJECTOR_CONFIG);
    const res = ok(answer);
    assert.equal(res.allowed, false);
    assert.equal(res.status?.code, 400);
    const lines = (res.status?.message ?? '').split('\n');
    assert.equal(lines[0], "3 problems with the pod's config-reloader settings, fix each of them:");
    assert.match(
      lines[1] ?? '',
      /^1\. config-reloader\.io\/reload-url: "ftp:\/\/127\.0\.0\.1\/reload" must use http or https.*; set it to/,
    );
    assert.match(
      lines[2] ?? '',
      /^2\. config-reloader\.io\/port: "none" is not a port number from 1 to 65535; set a port/,
    );
    assert.match(
      lines[3] ?? '',
      /^3\. config-reloader\.io\/cpu-request: "lots" is not a Kubernetes quantity.*; fix the value/,
    );
    assert.equal(lines.length, 4);
    assert.equal(answer.statusCode === 200 && answer.summary.reason, res.status?.message);
  });

  it("denies a Job's pod in legacy sidecar mode, saying why and that native mode (1.29+) is the fix", () => {
    const body = sample();
    body.request.object.spec.restartPolicy = 'OnFailure';
    const answer = review(body, 'annotation', { ...DEFAULT_INJECTOR_CONFIG, sidecarMode: 'legacy' });
    const res = ok(answer);
    assert.equal(res.allowed, false);
    assert.equal(res.patch, undefined);
    assert.match(
      res.status?.message ?? '',
      /^the injector flag --sidecar-mode=legacy cannot be used for this pod: the pod has restartPolicy: OnFailure .*never exits, so the pod would never complete.*sidecar-mode: "native".*Kubernetes 1\.29 and later/,
    );
    assert.equal(answer.statusCode === 200 && answer.summary.decision, 'denied');

    const annotated = sample();
    annotated.request.object.spec.restartPolicy = 'Never';
    annotated.request.object.metadata.annotations['config-reloader.io/sidecar-mode'] = 'legacy';
    const byAnnotation = ok(review(annotated, 'annotation', DEFAULT_INJECTOR_CONFIG));
    assert.equal(byAnnotation.allowed, false);
    assert.match(
      byAnnotation.status?.message ?? '',
      /^config-reloader\.io\/sidecar-mode: "legacy" cannot be used here/,
    );

    // A pod that runs until it is deleted (restartPolicy Always, the default) still gets the legacy sidecar.
    assert.equal(
      ok(review(sample(), 'annotation', { ...DEFAULT_INJECTOR_CONFIG, sidecarMode: 'legacy' })).allowed,
      true,
    );
  });

  it('admits unchanged a pod whose config volume is mounted only through subPath, with the reason and the warning', () => {
    const body = sample();
    body.request.object.spec.containers[0].volumeMounts[0] = {
      name: 'scrape-config',
      mountPath: '/etc/vmagent/scrape.yaml',
      subPath: 'scrape.yaml',
    };
    const answer = review(body, 'annotation', DEFAULT_INJECTOR_CONFIG);
    const res = ok(answer);
    assert.deepEqual([res.allowed, res.patch], [true, undefined]);
    assert.equal(answer.statusCode === 200 && answer.summary.decision, 'skipped');
    assert.equal(
      answer.statusCode === 200 && answer.summary.reason,
      'nothing to sync: only secret/configMap volumes mounted through subPath (scrape-config)',
    );
    assert.match(
      res.warnings?.[0] ?? '',
      /^volume "scrape-config" is not kept current by config-reloader: every mount of it uses subPath \(container "vmagent"\), and a subPath mount never sees updates/,
    );
    assert.match(
      res.warnings?.[1] ?? '',
      /nothing to sync: its secret\/configMap volumes are mounted only through subPath/,
    );
  });

  it("passes the pod's fsGroup to the sidecar, and warns when the app's user could not read its files", () => {
    const withGroup = sample();
    withGroup.request.object.spec.securityContext = { runAsUser: 1000, fsGroup: 2000 };
    withGroup.request.object.spec.volumes[0].configMap.defaultMode = 0o400;
    const res = ok(review(withGroup, 'annotation', DEFAULT_INJECTOR_CONFIG));
    const ops = JSON.parse(Buffer.from(res.patch as string, 'base64').toString('utf8'));
    const pod = structuredClone(withGroup.request.object);
    applyPatch(pod, ops);
    assert.ok(pod.spec.initContainers[0].args.includes('--fs-group=2000'));
    assert.equal(res.warnings, undefined);

    const without = sample();
    without.request.object.spec.securityContext = { runAsUser: 1000 };
    without.request.object.spec.volumes[0].configMap.defaultMode = 0o400;
    const warned = ok(review(without, 'annotation', DEFAULT_INJECTOR_CONFIG));
    assert.equal(warned.allowed, true);
    assert.equal(warned.warnings?.length, 1);
    assert.match(
      warned.warnings?.[0] ?? '',
      /^volume "scrape-config": its files get mode 0400 .*container "vmagent" \(runAsUser 1000\) cannot read them; set spec\.securityContext\.fsGroup/,
    );
  });

  it('turns an internal error into an admission with a warning, never a denial', () => {
    const broken = {
      ...DEFAULT_INJECTOR_CONFIG,
      get reloaderImage(): string {
        throw new Error('boom');
      },
    } as InjectorConfig;
    const answer = review(sample(), 'annotation', broken);
    const res = ok(answer);
    assert.equal(res.allowed, true);
    assert.equal(res.patch, undefined);
    assert.match(res.warnings?.[0] ?? '', /admitted without the (config-reloader )?sidecar/);
    assert.equal(answer.statusCode === 200 && answer.summary.decision, 'error');
  });
});

describe('encodeReview', () => {
  const annotated = (annotations: Record<string, string>) => {
    const body = sample();
    Object.assign(body.request.object.metadata.annotations, annotations);
    return body;
  };
  /** Opted in, but no secret or configMap volume: skipped, with a warning that says so. */
  const nothingToSync = () => {
    const body = sample();
    body.request.object.spec.volumes = [];
    for (const c of body.request.object.spec.containers) c.volumeMounts = [];
    return body;
  };
  for (const [what, body, optIn, decision] of [
    ['a patch', sample(), 'annotation', 'injected'],
    [
      'a patch with warnings',
      annotated({ 'config-reloader.io/mount-path': '/etc/x' }),
      'annotation',
      'injected',
    ],
    ['a skip', annotated({ 'config-reloader.io/inject': 'false' }), 'namespace', 'skipped'],
    ['a denial', annotated({ 'config-reloader.io/port': 'nope' }), 'annotation', 'denied'],
    ['a skip with a warning', nothingToSync(), 'annotation', 'skipped'],
  ] as const) {
    it(`gives exactly JSON.stringify's text for ${what}`, () => {
      const answer = review(body, optIn, DEFAULT_INJECTOR_CONFIG);
      assert.equal(answer.statusCode, 200);
      if (answer.statusCode !== 200) return;
      assert.equal(answer.summary.decision, decision);
      if (what.includes('warning'))
        assert.ok(answer.body.response.warnings?.length, 'the case has a warning');
      assert.equal(encodeReview(answer.body), JSON.stringify(answer.body));
    });
  }

  it('keeps the patch last in the response, where encodeReview puts it', () => {
    const answer = review(
      annotated({ 'config-reloader.io/mount-path': '/etc/x' }),
      'annotation',
      DEFAULT_INJECTOR_CONFIG,
    );
    assert.equal(answer.statusCode === 200 && answer.body.response.warnings?.length, 1);
    const response = (answer as { body: AdmissionReviewResponse }).body.response;
    assert.equal(Object.keys(response).at(-1), 'patch');
  });
});
