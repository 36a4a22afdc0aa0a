// The typo suggestions of the not-found hook: commands, topics, and commands under a topic.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {closestCommands, suggest} from './not-found.js'

const COMMANDS = ['demo', 'id', 'peers', 'plugins', 'plugins:install', 'request', 'serve', 'share', 'message:build', 'message:parse', 'message:send', 'version']
const TOPICS = ['message', 'plugins']

describe('not-found suggestions', () => {
  it('names the closest command within a third of the typed length (at least 2 edits)', () => {
    assert.deepEqual(closestCommands('reqest', COMMANDS), ['request'])
    assert.deepEqual(closestCommands('sahre', COMMANDS).slice(0, 1), ['share'])
    assert.deepEqual(closestCommands('zzzzzz', COMMANDS), [])
  })

  const cases: Array<[string, string[], ReturnType<typeof suggest>]> = [
    ['a command', ['reqest'], {suggestion: 'request', words: 1, topic: false}],
    ['a command, then its arguments', ['reqest', '127.0.0.1', 'Docs'], {suggestion: 'request', words: 1, topic: false}],
    ['a mistyped topic and a right command', ['mesage', 'parse'], {suggestion: 'message:parse', words: 2, topic: false}],
    ['a right topic and a mistyped command', ['message', 'prase'], {suggestion: 'message:parse', words: 2, topic: false}],
    ['a mistyped topic alone', ['mesage'], {suggestion: 'message', words: 1, topic: true}],
    ['a command beats a topic at the same distance', ['plugin'], {suggestion: 'plugins', words: 1, topic: false}],
    ['nothing close', ['xyzzyplugh'], undefined],
  ]
  for (const [what, words, expected] of cases) {
    it(what, () => assert.deepEqual(suggest(words, COMMANDS, TOPICS), expected))
  }
})
