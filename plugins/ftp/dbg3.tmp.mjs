import {makeTree, localSource, serve} from './dist/fixtures.js'
const tree = await makeTree()
const server = await serve(localSource(tree))
console.log(server.port, tree.root)
setTimeout(async () => { await server.close(); await tree.dispose() }, 20000)
