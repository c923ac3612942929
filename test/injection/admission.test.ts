import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { applyPatch } from 'rfc6902';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import { capturingLogger } from '../support/captured-log.ts';
import { webhookApp } from '../../src/webhook/app.ts';
import { createWebhookMetrics } from '../../src/webhook/metrics.ts';
import { validatePod } from '../support/pod-validation.ts';
import { restrictedViolations } from './pod-security.ts';

type Obj = Record<string, any>;

/** The recorded review of a vmagent pod (test/fixtures/admission-review.json), its annotations replaced. */
function reviewOf(annotations: Record<string, string>, change: (pod: Obj) => void = () => {}): Obj {
  const body = JSON.parse(
    readFileSync(new URL('../fixtures/admission-review.json', import.meta.url), 'utf8'),
  );
  const pod = body.request.object;
  pod.metadata.annotations = { 'config-reloader.io/inject': 'true', ...annotations };
  change(pod);
  return body;
}

/** A vmagent that passes PodSecurity restricted as user and group 65534. */
function restricted(pod: Obj): void {
  pod.spec.securityContext = { seccompProfile: { type: 'RuntimeDefault' } };
  pod.spec.containers[0].securityContext = {
    runAsNonRoot: true,
    runAsUser: 65534,
    runAsGroup: 65534,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'] },
  };
}

describe('issue 14 admission through the webhook app (/mutate)', () => {
  let app: FastifyInstance;
  const { log, lines } = capturingLogger('webhook', 'info');

  before(async () => {
    app = Fastify();
    await app.register(webhookApp, {
      config: DEFAULT_INJECTOR_CONFIG,
      metrics: createWebhookMetrics(),
      log,
    });
    await app.ready();
  });
  after(() => app.close());

  async function admit(body: Obj): Promise<Obj> {
    const res = await app.inject({ method: 'POST', url: '/mutate', payload: body });
    assert.equal(res.statusCode, 200, res.body);
    return res.json().response;
  }

  function patchedPod(body: Obj, response: Obj): Obj {
    const pod = structuredClone(body.request.object);
    const ops = JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8'));
    assert.deepEqual(
      applyPatch(pod, ops).filter((e) => e !== null),
      [],
    );
    assert.deepEqual(validatePod(pod), []);
    return pod;
  }

  it('vmagent preset by SIGHUP with events: a restricted pod stays restricted, the sidecar runs as the app user', async () => {
    const body = reviewOf(
      {
        'config-reloader.io/preset': 'vmagent',
        'config-reloader.io/reload-signal': 'SIGHUP',
        'config-reloader.io/events': 'true',
      },
      restricted,
    );
    const response = await admit(body);
    assert.equal(response.allowed, true);
    assert.equal(response.warnings, undefined);
    const pod = patchedPod(body, response);
    assert.equal(pod.spec.shareProcessNamespace, true);
    assert.deepEqual(restrictedViolations(pod), []);
    const sidecar = pod.spec.initContainers[0];
    assert.deepEqual(sidecar.args.slice(3), [
      '--reload-signal=SIGHUP',
      '--signal-container=vmagent',
      '--confirm-metrics-url=http://127.0.0.1:8429/metrics',
      '--confirm-success-metric=vm_promscrape_config_last_reload_successful',
      '--confirm-timestamp-metric=vm_promscrape_config_last_reload_success_timestamp_seconds',
      '--confirm-unchanged-keeps-timestamp',
      '--events',
    ]);
    assert.equal(sidecar.securityContext.runAsUser, 65534);
    // Not the app's group 65534: with both ids the app could read the sidecar's token through /proc.
    assert.equal(sidecar.securityContext.runAsGroup, 65532);
    assert.deepEqual(pod.spec.containers[0].volumeMounts.at(-1), {
      name: 'config-reloader-target',
      mountPath: '/run/config-reloader/containers/vmagent',
      readOnly: true,
    });
    // The app's port 8429 is declared, the sidecar keeps 9533.
    assert.equal(sidecar.args[1], '--listen=:9533');
  });

  it('denies with every problem in one message, and logs the denial', async () => {
    const response = await admit(
      reviewOf({
        'config-reloader.io/preset': 'vmagents',
        'config-reloader.io/reload-signal': 'SIGHUP',
        'config-reloader.io/reload-url': 'http://127.0.0.1:8429/-/reload',
        'config-reloader.io/restart-on-env-change': 'vmagent',
      }),
    );
    assert.equal(response.allowed, false);
    const message: string = response.status.message;
    assert.match(message, /^4 problems with the pod's config-reloader settings, fix each of them:\n/);
    assert.match(
      message,
      /\n1\. config-reloader\.io\/preset: "vmagents" is not a known preset; use one of vmagent, /,
    );
    assert.match(
      message,
      /\n2\. config-reloader\.io\/reload-signal: it cannot be used together with config-reloader\.io\/reload-url/,
    );
    assert.match(
      message,
      /\n3\. config-reloader\.io\/restart-on-env-change: container "vmagent" reads no Secret or ConfigMap/,
    );
    assert.match(message, /\n4\. container "vmagent" sets no runAsUser, so it runs as its image's user/);
    const logged = lines.find((line) => line.decision === 'denied');
    assert.equal(logged?.reason, message);
  });

  it('warns about an env-var consumer and a Prometheus without --web.enable-lifecycle, and admits the pod', async () => {
    const body = reviewOf({ 'config-reloader.io/preset': 'prometheus' }, (pod) => {
      pod.spec.containers[0].image = 'quay.io/prometheus/prometheus:v3.5.0';
      pod.spec.containers[0].args = ['--config.file=/etc/vmagent/scrape.yaml'];
      pod.spec.containers[0].ports = [];
      pod.spec.containers[0].envFrom = [{ configMapRef: { name: 'vmagent-scrape' } }];
    });
    const response = await admit(body);
    assert.equal(response.allowed, true);
    assert.equal(response.warnings.length, 2, response.warnings.join('\n'));
    assert.match(
      response.warnings[0],
      /^container "vmagent" reads ConfigMap "vmagent-scrape" \(envFrom\) through its environment/,
    );
    assert.match(response.warnings[1], /does not pass --web\.enable-lifecycle/);
    const pod = patchedPod(body, response);
    assert.equal(pod.spec.shareProcessNamespace, undefined);
    assert.ok(pod.spec.initContainers[0].args.includes('--reload-url=http://127.0.0.1:9090/-/reload'));
  });
});
