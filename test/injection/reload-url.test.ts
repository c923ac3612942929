import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkReloadUrl, isLoopbackHost, parseReloadMethod } from '../../src/injection/reload-url.ts';

describe('reload URL validation', () => {
  for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', 'LOCALHOST', '[::1]']) {
    it(`${host} is loopback`, () => assert.ok(isLoopbackHost(host)));
  }
  for (const host of [
    '10.0.0.1',
    'example.com',
    'localhost.example.com',
    '[::2]',
    '128.0.0.1',
    '0.0.0.0',
    'app.svc',
  ]) {
    it(`${host} is not loopback`, () => assert.equal(isLoopbackHost(host), false));
  }
  it('normalises short IPv4 forms before the loopback check', () => {
    assert.deepEqual(checkReloadUrl('http://127.1:9090/-/reload', 'loopback'), {
      ok: true,
      url: 'http://127.0.0.1:9090/-/reload',
      port: 9090,
    });
    assert.equal(checkReloadUrl('http://2130706433/', 'loopback').ok, true);
    assert.equal(checkReloadUrl('http://0x7f000001/', 'loopback').ok, true);
  });
  it("gives the URL's port, or its scheme's default", () => {
    const port = (url: string): number | undefined => {
      const check = checkReloadUrl(url, 'loopback');
      return check.ok ? check.port : undefined;
    };
    assert.equal(port('http://127.0.0.1:8429/-/reload'), 8429);
    assert.equal(port('http://localhost/-/reload'), 80);
    assert.equal(port('https://[::1]/reload'), 443);
    assert.equal(port('http://127.0.0.1:80/'), 80);
  });
  it('accepts http and https, IPv6 loopback, and any host when allowed', () => {
    assert.equal(checkReloadUrl('https://[::1]:8443/reload', 'loopback').ok, true);
    assert.equal(checkReloadUrl('http://prometheus.monitoring.svc:9090/-/reload', 'any').ok, true);
    assert.equal(checkReloadUrl('http://prometheus.monitoring.svc:9090/-/reload', 'loopback').ok, false);
  });
  it('rejects other schemes even when any host is allowed', () => {
    for (const url of [
      'ftp://127.0.0.1/x',
      'file:///etc/passwd',
      'javascript:alert(1)',
      'unix:/var/run/x.sock',
    ]) {
      assert.equal(checkReloadUrl(url, 'any').ok, false, url);
    }
  });
  it('never repeats credentials in its message', () => {
    const check = checkReloadUrl('http://user:s3cr3t@127.0.0.1/reload', 'loopback');
    assert.equal(check.ok, false);
    assert.doesNotMatch(check.ok ? '' : check.problem, /s3cr3t/);
  });
});

describe('reload method', () => {
  it('accepts GET, POST and PUT in any case, upper-cased', () => {
    assert.equal(parseReloadMethod('get'), 'GET');
    assert.equal(parseReloadMethod(' Post '), 'POST');
    assert.equal(parseReloadMethod('PUT'), 'PUT');
  });
  it('rejects other methods', () => {
    for (const m of ['DELETE', 'PATCH', 'HEAD', '', 'POST;'])
      assert.equal(parseReloadMethod(m), undefined, m);
  });
});
