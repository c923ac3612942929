import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import { injectorConfigFromFlags, injectorFlags } from '../../src/injection/flags.ts';
import { InvalidSetting } from '../../src/injection/knobs.ts';
import { parseFlags } from '../../src/shared/cli.ts';

const parse = (argv: string[]) => injectorConfigFromFlags(parseFlags('test', argv, injectorFlags).values);

describe('injector flags', () => {
  it('default to DEFAULT_INJECTOR_CONFIG', () => {
    assert.deepEqual(parse([]), DEFAULT_INJECTOR_CONFIG);
    assert.deepEqual(DEFAULT_INJECTOR_CONFIG.resources, {
      cpuRequest: '10m',
      memoryRequest: '48Mi',
      memoryLimit: '128Mi',
    });
    assert.equal(DEFAULT_INJECTOR_CONFIG.reloaderImage, 'config-reloader-injector:0.1.0');
  });

  it('set every field', () => {
    const config = parse([
      '--reloader-image=registry.local/cri:2',
      '--image-pull-policy=always',
      '--sidecar-mode=legacy',
      '--reloader-port=9600',
      '--cpu-request=5m',
      '--cpu-limit=100m',
      '--memory-request=32Mi',
      '--memory-limit=128Mi',
      '--allow-any-reload-host',
      '--reloader-log-level=debug',
    ]);
    assert.deepEqual(config, {
      reloaderImage: 'registry.local/cri:2',
      imagePullPolicy: 'Always',
      sidecarMode: 'legacy',
      port: 9600,
      resources: { cpuRequest: '5m', cpuLimit: '100m', memoryRequest: '32Mi', memoryLimit: '128Mi' },
      allowedReloadHosts: 'any',
      reloaderLogLevel: 'debug',
    });
  });

  it('do not share the default resources object', () => {
    parse(['--cpu-limit=1']).resources.cpuLimit = '2';
    assert.equal(DEFAULT_INJECTOR_CONFIG.resources.cpuLimit, undefined);
  });

  const bad: [string[], RegExp][] = [
    [['--sidecar-mode=sidecar'], /--sidecar-mode "sidecar" is not a sidecar mode; use "native"/],
    [['--reloader-port=0'], /--reloader-port "0" is not a port number/],
    [['--memory-limit=96MB'], /--memory-limit "96MB" is not a Kubernetes quantity/],
    [
      ['--memory-request=256Mi'],
      /memory request 256Mi \(from --memory-request\) is greater than the memory limit 128Mi \(from the default of --memory-limit\)/,
    ],
    [
      ['--image-pull-policy=Sometimes'],
      /--image-pull-policy "Sometimes" is not one of Always, IfNotPresent, Never/,
    ],
    [['--reloader-log-level=loud'], /--reloader-log-level "loud"/],
    [['--reloader-image=a b'], /--reloader-image "a b" is not an image reference/],
  ];
  for (const [argv, message] of bad) {
    it(`reject ${argv.join(' ')}`, () => {
      assert.throws(
        () => parse(argv),
        (err: unknown) => err instanceof InvalidSetting && message.test(err.message),
      );
    });
  }
});
