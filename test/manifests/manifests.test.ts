import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_INJECTOR_CONFIG } from '../../src/injection/config.ts';
import { injectManifests } from '../../src/manifests/manifests.ts';
import { validatePod } from '../support/pod-validation.ts';
import { MANIFESTS } from './sample-manifests.ts';

type Obj = Record<string, any>;

const options = { optIn: 'annotation' as const, config: DEFAULT_INJECTOR_CONFIG };

const docs = (text: string): Obj[] =>
  parseAllDocuments(text).map((d) => (Array.isArray(d) ? {} : (d.toJS() as Obj)));

describe('injectManifests on multi-document YAML', () => {
  const result = injectManifests(MANIFESTS, options);
  const [deployment, service, cronJob, pod] = docs(result.output) as [Obj, Obj, Obj, Obj];
  const [inDeployment, inService, inCronJob, inPod] = docs(MANIFESTS) as [Obj, Obj, Obj, Obj];

  it('injects the Deployment and the CronJob pod templates, and reports both', () => {
    assert.deepEqual(result.errors, []);
    assert.deepEqual(
      result.reports.map((r) => `${r.target}: ${r.outcome.action}`),
      [
        'document 1 (Deployment/shop/web): patch',
        'document 3 (CronJob/report): patch',
        'document 4 (Pod/not-opted-in): skip',
      ],
    );
    assert.equal(deployment.spec.template.spec.initContainers[0].name, 'config-reloader');
    assert.equal(deployment.spec.template.metadata.annotations['config-reloader.io/status'], 'injected');
    assert.deepEqual(deployment.spec.template.spec.volumes[0], { name: 'config', emptyDir: {} });
    const job = cronJob.spec.jobTemplate.spec.template;
    assert.equal(job.spec.initContainers[0].name, 'config-reloader');
    assert.deepEqual(job.spec.volumes[0], { name: 'creds', emptyDir: { medium: 'Memory' } });
    for (const template of [deployment.spec.template, job])
      assert.deepEqual(validatePod({ apiVersion: 'v1', kind: 'Pod', ...template }), []);
  });

  it('changes nothing outside the pod templates and nothing in other documents', () => {
    assert.deepEqual(service, inService);
    assert.deepEqual(pod, inPod);
    assert.deepEqual(
      { ...deployment, spec: { ...deployment.spec, template: null } },
      { ...inDeployment, spec: { ...inDeployment.spec, template: null } },
    );
    assert.equal(cronJob.spec.schedule, inCronJob.spec.schedule);
  });

  it('keeps comments', () => {
    for (const comment of ['# Shop front end', '# the app', '# serves the shop', '# http'])
      assert.ok(result.output.includes(comment), comment);
  });

  it('is idempotent: a second run changes nothing', () => {
    const again = injectManifests(result.output, options);
    assert.deepEqual(again.errors, []);
    assert.equal(again.output, result.output);
    assert.ok(again.reports.every((r) => r.outcome.action === 'skip'));
  });

  it('injects every template with --namespace-injection unless it opts out', () => {
    const all = injectManifests(MANIFESTS, { ...options, optIn: 'namespace' });
    assert.equal(docs(all.output)[3]?.spec.initContainers[0].name, 'config-reloader');
    const optedOut = MANIFESTS.replace(
      'name: not-opted-in',
      'name: not-opted-in\n  annotations: {config-reloader.io/inject: "false"}',
    );
    assert.equal(
      docs(injectManifests(optedOut, { ...options, optIn: 'namespace' }).output)[3]?.spec.initContainers,
      undefined,
    );
  });
});

describe('injectManifests errors', () => {
  it('reports a denial with the document, kind and name, and prints nothing', () => {
    const bad = MANIFESTS.replace('http://127.0.0.1:8080/-/reload', 'http://web.shop.svc:8080/-/reload');
    const result = injectManifests(bad, options);
    assert.equal(result.output, '');
    assert.equal(result.errors.length, 1);
    assert.match(
      result.errors[0] ?? '',
      /^document 1 \(Deployment\/shop\/web\): config-reloader\.io\/reload-url: host "web\.shop\.svc" is not a loopback address/,
    );
  });

  it('reports YAML that does not parse, with its line', () => {
    const result = injectManifests('kind: Pod\n---\na: [1, 2\nb: 3\n', options);
    assert.deepEqual(result.errors.length, 1);
    assert.match(result.errors[0] ?? '', /^standard input: line [34]: not valid YAML/);
  });

  it('reports JSON that does not parse', () => {
    assert.match(
      injectManifests('{"kind": "Pod",', options).errors.join('\n'),
      /^standard input: line 1: not valid JSON/,
    );
  });
});

describe('injectManifests on JSON', () => {
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', annotations: { 'config-reloader.io/inject': 'true' } },
    spec: { containers: [{ name: 'app', image: 'a' }], volumes: [{ name: 'c', configMap: { name: 'c' } }] },
  };

  it('injects a Pod and prints JSON', () => {
    const result = injectManifests(JSON.stringify(pod), options);
    const out = JSON.parse(result.output) as Obj;
    assert.equal(out.spec.initContainers[0].name, 'config-reloader');
    assert.deepEqual(validatePod(out), []);
  });

  it('injects the items of a kind: List, leaving the others', () => {
    const list = {
      apiVersion: 'v1',
      kind: 'List',
      items: [
        { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { a: 'b' } },
        pod,
        { ...pod, metadata: { name: 'q' } },
      ],
    };
    const result = injectManifests(JSON.stringify(list, null, 2), options);
    const out = JSON.parse(result.output) as Obj;
    assert.deepEqual(out.items[0], list.items[0]);
    assert.equal(out.items[1].spec.initContainers[0].name, 'config-reloader');
    assert.deepEqual(out.items[2], list.items[2]);
    assert.deepEqual(
      result.reports.map((r) => r.target),
      ['document 1, item 2 (Pod/p)', 'document 1, item 3 (Pod/q)'],
    );
  });

  it('injects the items of a YAML List too', () => {
    const yamlList = `apiVersion: v1\nkind: List\nitems:\n  - ${JSON.stringify(pod)}\n`;
    const out = docs(injectManifests(yamlList, options).output)[0] as Obj;
    assert.equal(out.items[0].spec.initContainers[0].name, 'config-reloader');
  });

  it('falls back to replacing the template when YAML anchors do not line up with the JSON', () => {
    const anchored = `kind: Pod
metadata:
  name: a
  annotations: {config-reloader.io/inject: "true"}
spec:
  containers:
    - &app {name: app, image: a, volumeMounts: [{name: c, mountPath: /c}]}
  initContainers:
    - <<: *app
      name: setup
  volumes: [{name: c, configMap: {name: c}}]
`;
    const result = injectManifests(anchored, options);
    assert.deepEqual(result.errors, []);
    const out = docs(result.output)[0] as Obj;
    assert.deepEqual(
      out.spec.initContainers.map((c: Obj) => c.name),
      ['config-reloader', 'setup'],
    );
  });
});
