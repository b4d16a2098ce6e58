// The library's JSON Patch and Merge Patch against the json-patch-tests suite (the copy under
// Tests/DeltacastJSONTests/Fixtures, with its README) and RFC 7396's examples.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Deltacast, root } from './helpers.mjs';

const fixtures = path.join(root, 'Tests', 'DeltacastJSONTests', 'Fixtures', 'json-patch-tests');

for (const file of ['tests.json', 'spec_tests.json']) {
  test(`json-patch-tests ${file}`, () => {
    const cases = JSON.parse(fs.readFileSync(path.join(fixtures, file), 'utf8'));
    let run = 0;
    for (const [index, c] of cases.entries()) {
      if (c.disabled) continue;
      const name = `${file} #${index} ${c.comment || ''}`;
      if (c.error) {
        assert.throws(() => Deltacast.applyPatch(c.doc, c.patch), undefined, name + ': ' + c.error);
      } else if ('expected' in c) {
        assert.deepStrictEqual(Deltacast.applyPatch(c.doc, c.patch), c.expected, name);
      } else {
        Deltacast.applyPatch(c.doc, c.patch);   // must not throw
      }
      run++;
    }
    assert.ok(run >= (file === 'tests.json' ? 90 : 15), `${run} cases run`);
  });
}

test('a failing patch leaves the document untouched', () => {
  const doc = { a: [1, 2], b: 'x' };
  assert.throws(() => Deltacast.applyPatch(doc, [{ op: 'remove', path: '/a/0' }, { op: 'test', path: '/b', value: 'y' }]));
  assert.deepStrictEqual(doc, { a: [1, 2], b: 'x' });
});

test('RFC 7396 merge patch examples', () => {
  const examples = [
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [['a', 'b'], ['c', 'd'], ['c', 'd']],
    [{ a: 'b' }, ['c'], ['c']],
    [{ a: 'foo' }, null, null],
    [{ a: 'foo' }, 'bar', 'bar'],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: 'b', c: null }, { a: 'b' }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  for (const [target, patch, result] of examples) assert.deepStrictEqual(Deltacast.applyMerge(target, patch), result);
});
