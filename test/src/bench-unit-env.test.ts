// The soak runs every serve with the environment docs/fpeer.service gives serve: what it reads from the unit, and what it refuses.
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {pathToFileURL} from 'node:url'
import {describe, it} from 'node:test'
import {ROOT} from './harness.js'

type UnitEnvironment = (text: string) => Record<string, string>
const {unitEnvironment} = (await import(pathToFileURL(path.join(ROOT, 'bench/unit-env.js')).href)) as {unitEnvironment: UnitEnvironment}

describe('bench: the unit environment the soak runs serve with', () => {
  it('docs/fpeer.service gives glibc its arena setting and nothing else but the home, which the soak leaves out', () => {
    const unit = readFileSync(path.join(ROOT, 'docs/fpeer.service'), 'utf8')
    assert.match(unit, /^Environment=FPEER_HOME=/m)
    assert.deepEqual(unitEnvironment(unit), {MALLOC_ARENA_MAX: '2'})
  })

  it('reads several assignments on one line and ignores comments and other keys', () => {
    const text = [
      '[Service]',
      '# Environment=COMMENTED=1',
      'Environment=A=1 B=two',
      '  Environment=C=',
      'ExecStart=/usr/bin/env fpeer serve',
      'Environment=FPEER_HOME=%h/x',
    ].join('\n')
    assert.deepEqual(unitEnvironment(text), {A: '1', B: 'two', C: ''})
  })

  it('refuses what only systemd can expand, naming the line, rather than running serve without it', () => {
    assert.throws(() => unitEnvironment('Environment="A=1 2"'), /line 1: .* is not NAME=VALUE/)
    assert.throws(() => unitEnvironment('\nEnvironment=CACHE=%h/cache'), /line 2: CACHE's value "%h\/cache" needs systemd/)
    assert.throws(() => unitEnvironment("Environment=A='x'"), /needs systemd/)
  })
})
