// serve.js starts kinesalite or dynalite through their library API so that they
// listen on 127.0.0.1 only (their command-line entry points bind every
// interface). Usage: node serve.js kinesalite|dynalite PORT [DATA_DIR]
// With DATA_DIR the server keeps its LevelDB store there, so that streams,
// records and tables survive a restart (as fault tests expect of the real
// services); without it everything lives in memory.
'use strict'

const [name, portArg, dataDir] = process.argv.slice(2)
const port = Number(portArg)

// Short state transitions (CREATING -> ACTIVE and so on) keep tests fast; the
// SDK waiters still see the intermediate states.
const servers = {
  kinesalite: () => require('kinesalite')({
    createStreamMs: 50,
    deleteStreamMs: 50,
    updateStreamMs: 50,
    shardLimit: 10000, // the data persists across runs: do not let old streams exhaust it
    path: dataDir,
  }),
  dynalite: () => require('dynalite')({
    createTableMs: 50,
    deleteTableMs: 50,
    updateTableMs: 50,
    path: dataDir,
  }),
}

if (!servers[name] || !Number.isInteger(port) || port <= 0) {
  console.error('usage: node serve.js kinesalite|dynalite PORT [DATA_DIR]')
  process.exit(2)
}

// dynalite throws from a request's 'error' handler when a client goes away
// mid-request (a test SIGKILLs sinkd), which would end the server for every
// later test. A request aborted by its client is nothing to stop for.
process.on('uncaughtException', (err) => {
  if (err && (err.code === 'ECONNRESET' || err.message === 'aborted')) {
    console.error(`${name}: a client went away mid-request (${err.message}); still serving`)
    return
  }
  console.error(err)
  process.exit(1)
})

const server = servers[name]()
server.on('error', (err) => {
  console.error(`${name}: ${err.message}`)
  process.exit(1)
})
server.listen(port, '127.0.0.1', () => {
  console.log(`${name} listening on 127.0.0.1:${port}`)
})

// Exit promptly on TERM/INT so that stack.sh down does not wait for the KILL.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)))
}
