import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { args, denial, flag, injected, makePod, sidecar } from './pod-builder.ts';

const RELOAD = { 'config-reloader.io/reload-url': 'http://127.0.0.1:8080/-/reload' };
const CONFIRM = {
  'config-reloader.io/metrics-url': 'http://127.0.0.1:8080/metrics',
  'config-reloader.io/success-metric': 'app_config_last_reload_successful',
};

describe('confirmation from explicit annotations', () => {
  it('becomes the --confirm-* arguments, the timestamp and the timeout when given', () => {
    const c = sidecar(
      injected(
        makePod({
          annotations: {
            ...RELOAD,
            ...CONFIRM,
            'config-reloader.io/timestamp-metric': 'app:last_reload_ts',
            'config-reloader.io/confirm-timeout': '2m',
          },
        }),
      ).pod,
    );
    assert.deepEqual(args(c).slice(3), [
      '--reload-url=http://127.0.0.1:8080/-/reload',
      '--reload-method=POST',
      '--confirm-metrics-url=http://127.0.0.1:8080/metrics',
      '--confirm-success-metric=app_config_last_reload_successful',
      '--confirm-timestamp-metric=app:last_reload_ts',
      '--confirm-timeout=2m',
    ]);
  });

  it('works with a signal as the delivery', () => {
    const c = sidecar(
      injected(
        makePod({
          annotations: { 'config-reloader.io/reload-signal': 'SIGHUP', ...CONFIRM },
          spec: {
            containers: [{ name: 'app', image: 'a', securityContext: { runAsUser: 10, runAsGroup: 10 } }],
          },
        }),
      ).pod,
    );
    assert.equal(flag(c, 'confirm-success-metric'), 'app_config_last_reload_successful');
    assert.equal(flag(c, 'reload-signal'), 'SIGHUP');
  });

  it('accepts a non-loopback metrics URL only with --allow-any-reload-host, as for the reload URL', () => {
    const annotations = {
      'config-reloader.io/reload-url': 'http://app.demo.svc:8080/-/reload',
      ...CONFIRM,
      'config-reloader.io/metrics-url': 'http://app.demo.svc:8080/metrics',
    };
    assert.equal(
      flag(
        sidecar(injected(makePod({ annotations }), { allowedReloadHosts: 'any' }).pod),
        'confirm-metrics-url',
      ),
      'http://app.demo.svc:8080/metrics',
    );
    assert.match(
      denial(
        makePod({
          annotations: { ...RELOAD, ...CONFIRM, 'config-reloader.io/metrics-url': 'http://10.0.0.1/m' },
        }),
      ),
      /^config-reloader\.io\/metrics-url: host "10\.0\.0\.1" is not a loopback address: the metrics URL must point into the pod itself \(127\.0\.0\.1, ::1 or localhost\); set it to the http\(s\) URL of the app's Prometheus metrics inside the pod, for example http:\/\/127\.0\.0\.1:8429\/metrics$/,
    );
  });

  it('ignores confirm-timeout without confirmation, with a warning', () => {
    const { pod, warnings } = injected(
      makePod({ annotations: { ...RELOAD, 'config-reloader.io/confirm-timeout': '5s' } }),
    );
    assert.ok(
      warnings.includes(
        'config-reloader.io/confirm-timeout is ignored without confirmation (config-reloader.io/metrics-url and config-reloader.io/success-metric, or config-reloader.io/preset)',
      ),
    );
    assert.equal(flag(sidecar(pod), 'confirm-timeout'), undefined);
  });

  const denials: [string, Record<string, string>, RegExp][] = [
    [
      'metrics-url without success-metric',
      { ...RELOAD, 'config-reloader.io/metrics-url': CONFIRM['config-reloader.io/metrics-url'] },
      /^config-reloader\.io\/metrics-url: it needs config-reloader\.io\/success-metric: .*; add config-reloader\.io\/success-metric with the metric that is 1/,
    ],
    [
      'success-metric without metrics-url',
      { ...RELOAD, 'config-reloader.io/success-metric': 'x' },
      /^config-reloader\.io\/success-metric: it needs config-reloader\.io\/metrics-url: .*; add config-reloader\.io\/metrics-url/,
    ],
    [
      'timestamp-metric alone',
      { ...RELOAD, 'config-reloader.io/timestamp-metric': 'x' },
      /^config-reloader\.io\/timestamp-metric: it needs config-reloader\.io\/metrics-url and config-reloader\.io\/success-metric: .*; add both, or remove/,
    ],
    [
      'confirmation without a reload URL or signal',
      CONFIRM,
      /^config-reloader\.io\/metrics-url: confirmation needs a reload to confirm: .*neither a reload URL nor a reload signal; add config-reloader\.io\/reload-url \(HTTP\) or config-reloader\.io\/reload-signal \(signal\)/,
    ],
    [
      'a metric name Prometheus would not accept',
      { ...RELOAD, ...CONFIRM, 'config-reloader.io/success-metric': 'app-reload-ok' },
      /^config-reloader\.io\/success-metric: "app-reload-ok" is not a Prometheus metric name; use the name of the metric that is 1 when the last reload succeeded/,
    ],
    [
      'a timeout that is not a duration',
      { ...RELOAD, ...CONFIRM, 'config-reloader.io/confirm-timeout': 'soon' },
      /^config-reloader\.io\/confirm-timeout: "soon" is not a duration; use a duration such as 10s, 2m or 500ms/,
    ],
    [
      'a zero timeout',
      { ...RELOAD, ...CONFIRM, 'config-reloader.io/confirm-timeout': '0s' },
      /^config-reloader\.io\/confirm-timeout: "0s" is no time to wait/,
    ],
  ];
  for (const [what, annotations, expected] of denials) {
    it(`denies ${what}`, () => assert.match(denial(makePod({ annotations })), expected));
  }

  it('an invalid part is reported once, not again as missing', () => {
    const message = denial(
      makePod({
        annotations: { ...RELOAD, ...CONFIRM, 'config-reloader.io/metrics-url': 'ftp://127.0.0.1/m' },
      }),
    );
    assert.match(
      message,
      /^config-reloader\.io\/metrics-url: "ftp:\/\/127\.0\.0\.1\/m" must use http or https, not ftp; /,
    );
    assert.doesNotMatch(message, /needs/);
  });
});

describe('config-reloader.io/events', () => {
  const confirmed = { ...RELOAD, ...CONFIRM };
  const uid = (c: Record<string, unknown>): unknown =>
    (c.env as { name: string; valueFrom?: unknown }[]).find((e) => e.name === 'POD_UID')?.valueFrom;

  it('"true" adds --events with confirmation; "false" and absence add nothing; anything else is denied', () => {
    const withEvents = sidecar(
      injected(makePod({ annotations: { ...confirmed, 'config-reloader.io/events': 'True' } })).pod,
    );
    assert.equal(args(withEvents).at(-1), '--events');
    for (const annotations of [{ 'config-reloader.io/events': 'false' }, {}] as Record<string, string>[])
      assert.equal(
        args(sidecar(injected(makePod({ annotations: { ...confirmed, ...annotations } })).pod)).includes(
          '--events',
        ),
        false,
      );
    assert.equal(
      denial(makePod({ annotations: { 'config-reloader.io/events': 'yes' } })),
      'config-reloader.io/events: "yes" is neither "true" nor "false"; set it to "true" or "false"',
    );
  });

  it('is ignored, with a warning, when nothing would be recorded: no confirmation, no restart-on-env-change', () => {
    const without: Record<string, string>[] = [{}, RELOAD, { 'config-reloader.io/reload-signal': 'SIGHUP' }];
    for (const annotations of without) {
      const { pod, warnings } = injected(
        makePod({
          annotations: { ...annotations, 'config-reloader.io/events': 'true' },
          spec: {
            containers: [{ name: 'app', image: 'a', securityContext: { runAsUser: 10, runAsGroup: 10 } }],
          },
        }),
      );
      assert.equal(args(sidecar(pod)).includes('--events'), false);
      assert.equal(uid(sidecar(pod)), undefined);
      assert.ok(
        warnings.includes(
          'config-reloader.io/events: "true" is ignored: Events are recorded for confirmed reloads and restarts, and this pod has neither; add config-reloader.io/preset or config-reloader.io/metrics-url and config-reloader.io/success-metric (confirmation), or config-reloader.io/restart-on-env-change',
        ),
        warnings.join('\n'),
      );
    }
    // A restart is recorded (ContainerRestarted), confirmation or not.
    const restarts = injected(
      makePod({
        annotations: {
          'config-reloader.io/events': 'true',
          'config-reloader.io/restart-on-env-change': 'app',
        },
        spec: {
          containers: [
            {
              name: 'app',
              image: 'a',
              securityContext: { runAsUser: 10, runAsGroup: 10 },
              envFrom: [{ secretRef: { name: 'env' } }],
            },
          ],
        },
      }),
    );
    assert.equal(args(sidecar(restarts.pod)).includes('--events'), true);
    assert.deepEqual(
      restarts.warnings.filter((w) => w.includes('events')),
      [],
    );
  });

  it('the sidecar knows its pod uid, the involved object of its Events, only with --events', () => {
    const withEvents = injected(
      makePod({ annotations: { ...confirmed, 'config-reloader.io/events': 'true' } }),
    );
    assert.deepEqual(uid(sidecar(withEvents.pod)), {
      fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.uid' },
    });
    assert.equal(uid(sidecar(injected(makePod({ annotations: confirmed })).pod)), undefined);
    assert.equal(uid(sidecar(injected(makePod()).pod)), undefined);
  });
});
