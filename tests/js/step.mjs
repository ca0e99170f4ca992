// One named step of a client script: prints "ok - NAME", or "not ok - NAME"
// with the error (and the HTTP answer when the error carries one) and exits 1.
export async function step (name, fn) {
  try {
    await fn()
    console.log(`ok - ${name}`)
  } catch (error) {
    console.log(`not ok - ${name}: ${error.stack || error}`)
    // Some clients throw the fetch Response itself, others wrap it.
    const response = error?.response ?? (error?.status ? error : undefined)
    if (response?.text) console.log(`  status ${response.status}: ${await response.text()}`)
    process.exit(1)
  }
}
