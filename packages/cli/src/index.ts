// @fpeer/cli: the fpeer command line; `run` is oclif's.
export {run} from '@oclif/core'
