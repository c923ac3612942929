import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  args,
  containers,
  flag,
  initContainers,
  inject,
  injected,
  makePod,
  type Obj,
} from './pod-builder.ts';

/**
 * The kubelet writes Secret/ConfigMap files as root, with the pod's fsGroup as their group and group-read added
 * (mode | 0440) when it has one. The sidecar writes as 65532: told the fsGroup it does the same; without one, an
 * app of another user reads the files only if their mode lets others read, and admission says so.
 */

const secretVolume = (secret: Obj = {}): Obj => ({
  name: 'tls',
  secret: { secretName: 'app-tls', ...secret },
});

function pod(parts: { secret?: Obj; podContext?: Obj; appContext?: Obj; spec?: Obj } = {}): Obj {
  return makePod({
    volumes: [secretVolume(parts.secret)],
    mounts: [{ name: 'tls', mountPath: '/etc/tls', readOnly: true }],
    spec: {
      ...(parts.podContext ? { securityContext: parts.podContext } : {}),
      containers: [
        {
          name: 'app',
          image: 'example/app:1',
          ...(parts.appContext ? { securityContext: parts.appContext } : {}),
          volumeMounts: [{ name: 'tls', mountPath: '/etc/tls', readOnly: true }],
        },
      ],
      ...parts.spec,
    },
  });
}

const accessWarnings = (warnings: string[]): string[] =>
  warnings.filter((w) => w.includes('cannot read them'));

describe("the sidecar is told the pod's fsGroup", () => {
  it('adds --fs-group=GID to the native sidecar when the pod sets spec.securityContext.fsGroup', () => {
    const out = injected(pod({ podContext: { fsGroup: 2000 } })).pod;
    const sidecar = initContainers(out)[0] as Obj;
    assert.equal(flag(sidecar, 'fs-group'), '2000');
    assert.equal(args(sidecar).filter((a) => a.startsWith('--fs-group')).length, 1);
  });

  it('adds it to both legacy containers, and fsGroup 0 counts', () => {
    const out = injected(pod({ podContext: { fsGroup: 0 } }), { sidecarMode: 'legacy' }).pod;
    assert.equal(flag(initContainers(out)[0] as Obj, 'fs-group'), '0');
    assert.equal(flag(containers(out).at(-1) as Obj, 'fs-group'), '0');
  });

  it('adds nothing without an fsGroup, or with one the API server would reject', () => {
    for (const podContext of [
      undefined,
      { runAsUser: 1000 },
      { fsGroup: '2000' },
      { fsGroup: -1 },
      { fsGroup: 1.5 },
    ]) {
      // Not injected(): it checks the result against the pod schema, which these fsGroups fail already.
      const outcome = inject(pod(podContext ? { podContext } : {}));
      assert.equal(outcome.action, 'patch');
      const out = outcome.action === 'patch' ? outcome.pod : {};
      assert.equal(flag(initContainers(out)[0] as Obj, 'fs-group'), undefined, JSON.stringify(podContext));
    }
  });
});

describe('admission warns when the app will not be able to read its files', () => {
  it('warns for a 0400 Secret, no fsGroup, and an app of another non-root user, naming volume, mode and fix', () => {
    const { warnings } = injected(pod({ secret: { defaultMode: 0o400 }, podContext: { runAsUser: 1000 } }));
    assert.deepEqual(accessWarnings(warnings), [
      'volume "tls": its files get mode 0400 and, as the pod sets no fsGroup, belong to the config-reloader sidecar\'s user 65532, so container "app" (runAsUser 1000) cannot read them; set spec.securityContext.fsGroup (the files then get that group with group-read, as the kubelet does), or give the volume a mode that others can read, such as 0644 (or one with group-read, such as 0440, and group 65532 in the container\'s runAsGroup or the pod\'s supplementalGroups)',
    ]);
  });

  it('does not warn when the pod sets an fsGroup: the files get it, with group-read, and every container is in it', () => {
    const { warnings } = injected(
      pod({ secret: { defaultMode: 0o400 }, podContext: { runAsUser: 1000, fsGroup: 3000 } }),
    );
    assert.deepEqual(accessWarnings(warnings), []);
  });

  it('names only the modes that block, from items and defaultMode, and the container-level user', () => {
    const { warnings } = injected(
      pod({
        secret: {
          defaultMode: 0o644,
          items: [
            { key: 'tls.crt', path: 'tls.crt' },
            { key: 'tls.key', path: 'tls.key', mode: 0o600 },
          ],
        },
        podContext: { runAsUser: 65532 },
        appContext: { runAsUser: 1001 },
      }),
    );
    const [warning, ...rest] = accessWarnings(warnings);
    assert.deepEqual(rest, []);
    assert.match(
      warning ?? '',
      /^volume "tls": its files get mode 0600 and.* container "app" \(runAsUser 1001\) cannot read them/,
    );
  });

  it("applies group-read (0440) only to a process in the sidecar's group 65532", () => {
    const other = injected(
      pod({ secret: { defaultMode: 0o440 }, podContext: { runAsUser: 1000, runAsGroup: 1000 } }),
    );
    assert.equal(accessWarnings(other.warnings).length, 1);
    for (const context of [
      { podContext: { runAsUser: 1000, runAsGroup: 65532 } },
      { podContext: { runAsUser: 1000, supplementalGroups: [65532] } },
      { podContext: { runAsUser: 1000 }, appContext: { runAsGroup: 65532 } },
    ]) {
      const { warnings } = injected(pod({ secret: { defaultMode: 0o440 }, ...context }));
      assert.deepEqual(accessWarnings(warnings), [], JSON.stringify(context));
    }
  });

  it("does not warn for modes others can read, for the sidecar's own user, for root, or for an unknown user", () => {
    for (const parts of [
      { secret: {}, podContext: { runAsUser: 1000 } }, // the kubelet's default 0644
      { secret: { defaultMode: 0o444 }, podContext: { runAsUser: 1000 } },
      { secret: { defaultMode: 0o400 }, podContext: { runAsUser: 65532 } },
      { secret: { defaultMode: 0o400 }, podContext: { runAsUser: 0 } },
      { secret: { defaultMode: 0o400 }, podContext: { runAsNonRoot: true } }, // the image's user: unknown here
      { secret: { defaultMode: 0o400 } },
    ]) {
      const { warnings } = injected(pod(parts));
      assert.deepEqual(accessWarnings(warnings), [], JSON.stringify(parts));
    }
  });

  it('warns for root that dropped its capability to read any file, unless it adds it back', () => {
    const dropped = injected(
      pod({
        secret: { defaultMode: 0o400 },
        podContext: { runAsUser: 0 },
        appContext: { capabilities: { drop: ['ALL'] } },
      }),
    );
    assert.match(
      accessWarnings(dropped.warnings)[0] ?? '',
      /container "app" \(runAsUser 0\) cannot read them/,
    );
    const addedBack = injected(
      pod({
        secret: { defaultMode: 0o400 },
        podContext: { runAsUser: 0 },
        appContext: { capabilities: { drop: ['ALL'], add: ['CAP_DAC_READ_SEARCH'] } },
      }),
    );
    assert.deepEqual(accessWarnings(addedBack.warnings), []);
  });

  it('names every container that mounts the volume and cannot read it, init containers included, in one warning', () => {
    const { warnings } = injected(
      pod({
        secret: { defaultMode: 0o400 },
        podContext: { runAsUser: 1000 },
        spec: {
          initContainers: [
            {
              name: 'setup',
              image: 's',
              securityContext: { runAsUser: 1002 },
              volumeMounts: [{ name: 'tls', mountPath: '/tls' }],
            },
            { name: 'other', image: 'o', securityContext: { runAsUser: 1003 } },
          ],
        },
      }),
    );
    const found = accessWarnings(warnings);
    assert.equal(found.length, 1);
    assert.match(
      found[0] ?? '',
      /so container "setup" \(runAsUser 1002\), container "app" \(runAsUser 1000\) cannot read them/,
    );
  });
});
