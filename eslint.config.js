// The linter `npm test` runs: type-aware rules that catch bugs (a promise nobody awaits, a `!` that hides an undefined), not style.
import tseslint from 'typescript-eslint'

export default tseslint.config(
  {ignores: ['**/dist/**', '**/node_modules/**', '**/*.js', '**/*.d.ts']},
  {
    files: ['**/*.ts'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: {projectService: true, tsconfigRootDir: import.meta.dirname},
    },
    plugins: {'@typescript-eslint': tseslint.plugin},
    linterOptions: {reportUnusedDisableDirectives: 'error'},
    rules: {
      // node:test's describe/it return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': ['error', {allowForKnownSafeCalls: [{from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite', 'before', 'after', 'beforeEach', 'afterEach']}]}],
      '@typescript-eslint/no-non-null-assertion': 'error',
      // Control characters in a pattern are a bug unless meant: the places that mean them say so.
      'no-control-regex': 'error',
    },
  },
  {
    // Files that still hold `!` assertions from before the linter: new files get the rule.
    // Take a file off this list once its assertions are gone; never add one.
    files: [
      'packages/cli/src/commands/request.ts',
      'packages/cli/src/commands/serve.ts',
      'packages/cli/src/hooks/not-found.ts',
      'packages/cli/src/hooks/plugins-install-guard.ts',
      'packages/cli/src/services/demo.ts',
      'packages/cli/src/services/message.ts',
      'packages/cli/src/services/plugin-registry.ts',
      'packages/cli/src/settings.ts',
      'packages/cli/src/util.ts',
      'packages/core/src/conformance/peer.ts',
      'packages/core/src/display.ts',
      'packages/core/src/fs/folder-dirs.ts',
      'packages/core/src/fs/leftovers.ts',
      'packages/core/src/fs/safe-path.ts',
      'packages/core/src/log.ts',
      'packages/core/src/net/limits.ts',
      'packages/core/src/node.ts',
      'packages/core/src/plugins.ts',
      'packages/core/src/session/host.ts',
      'packages/core/src/session/requester.ts',
      'packages/core/src/sync/folder.ts',
      'packages/core/src/transfer/fetch.ts',
      'packages/core/src/wire/be-peer-request.ts',
      'packages/core/src/wire/codec.ts',
      'packages/core/src/wire/file-list.ts',
      'packages/core/src/wire/files-to-get.ts',
      'packages/core/src/wire/files-updated.ts',
      'packages/core/src/wire/frame.ts',
      'packages/core/src/wire/peer-error.ts',
      'packages/core/src/wire/trusted-peer-confirm.ts',
      'plugins/ftp/src/client.ts',
      'plugins/ftp/src/fixtures.ts',
      'plugins/ftp/src/server-commands.ts',
      'plugins/ftp/src/server-session.ts',
      'plugins/http/src/client.ts',
      'plugins/http/src/server.ts',
      'plugins/sftp/src/client.ts',
      'plugins/sftp/src/server.ts',
    ],
    rules: {'@typescript-eslint/no-non-null-assertion': 'off'},
  },
  {
    // In tests a wrong `!` throws and fails the test, which is what a test should do: the rule guards shipped code.
    files: ['**/*.test.ts', 'test/**/*.ts'],
    rules: {'@typescript-eslint/no-non-null-assertion': 'off'},
  },
)
