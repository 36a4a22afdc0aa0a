// How `npm view <spec> name --json` answers are read: the outputs below are npm 11's, written out literally.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {classifyView} from './plugin-registry.js'

const PKG = '@fpeer/plugin-sftp'

describe('classifyView', () => {
  const cases: Array<[string, number | null, string, ReturnType<typeof classifyView>]> = [
    ['one version matches', 0, '"@fpeer/plugin-sftp"\n', {found: true}],
    ['several versions match', 0, '[\n  "@fpeer/plugin-sftp",\n  "@fpeer/plugin-sftp"\n]\n', {found: true}],
    [
      'no such package (npm ≥ 7)',
      1,
      '{\n  "error": {\n    "code": "E404",\n    "summary": "Not Found - GET http://127.0.0.1:4873/@fpeer%2fplugin-sftp - no such package available"\n  }\n}\n',
      {found: false, missing: true},
    ],
    ['no version in the range (older npm)', 0, '', {found: false, missing: true}],
    [
      'registry refuses connections',
      1,
      '{\n  "error": {\n    "code": "ECONNREFUSED",\n    "summary": "FetchError: request to http://127.0.0.1:1/@fpeer%2fplugin-sftp failed"\n  }\n}\n',
      {found: false, missing: false, npmCode: 'ECONNREFUSED'},
    ],
    ['npm killed, nothing printed', null, '', {found: false, missing: false}],
    ['garbage', 1, '<html>proxy error</html>', {found: false, missing: false}],
    // A registry that serves another package under the asked-for name is not believed.
    ['another name answers', 0, '"sftp"\n', {found: false, missing: false, otherName: 'sftp'}],
    ['one of several versions is another package', 0, '["@fpeer/plugin-sftp", "sftp"]', {found: false, missing: false, otherName: 'sftp'}],
  ]
  for (const [name, code, stdout, want] of cases) it(name, () => assert.deepEqual(classifyView(PKG, code, stdout), want))
})
