// Drives the dashboard (/ui) in a real headless Chromium, the Debian one (playwright-core
// downloads no browser): sign-in, pin from a Kubo origin, watch it reach pinned live, filter,
// details, phone width, remove; and no console error or CSP violation on the way.
// Usage: node dashboard.mjs BASE_URL USER PASSWORD CID ORIGIN_MULTIADDR SCREENSHOT_DIR [ADMIN]
// (or DASHBOARD_BASE, DASHBOARD_USER, ... in the environment; CHROMIUM overrides the browser).
// ADMIN is "yes" or "no" when the user's admin panel must (not) show; by default either is fine.
// Prints "all operations passed" and exits 0, or exits 1 naming the step that failed.
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { chromium } from 'playwright-core'

const NAMES = ['BASE', 'USER', 'PASSWORD', 'CID', 'ORIGIN', 'SCREENSHOTS', 'ADMIN']
const args = process.argv.slice(2)
const [base, user, password, cid, origin, shots, expectAdmin = 'any'] = NAMES.map((n, i) => args[i] ?? process.env[`DASHBOARD_${n}`])
if (!shots) {
  console.error('usage: node dashboard.mjs BASE_URL USER PASSWORD CID ORIGIN_MULTIADDR SCREENSHOT_DIR [yes|no]')
  process.exit(2)
}
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium'
const desktop = { width: 1280, height: 900 }
const phone = { width: 390, height: 844 }
const pinName = `Dashboard e2e ${Date.now()}`

// The one failed load the page is expected to log: the wrong password's 401.
const EXPECTED_FAILURES = [{ status: 401, path: '/token' }]
const problems = []

async function step (name, fn) {
  const started = Date.now()
  try {
    await fn()
  } catch (error) {
    error.message = `${name}: ${error.message}`
    throw error
  }
  console.log(`ok - ${name} (${Date.now() - started} ms)`)
}

async function shot (page, file, options = {}) {
  await page.screenshot({ path: path.join(shots, file), ...options })
}

function watch (page) {
  page.on('console', message => {
    if (message.type() !== 'error') return
    const text = message.text()
    const url = message.location().url ?? ''
    const status = Number(/status of (\d+)/.exec(text)?.[1])
    const expected = EXPECTED_FAILURES.some(f => f.status === status && new URL(url, base).pathname === f.path)
    if (!expected) problems.push(`console error: ${text} (${url})`)
  })
  page.on('pageerror', error => problems.push(`page error: ${error.message}`))
}

const profile = await mkdtemp(path.join(tmpdir(), 'pincluster-chromium-'))
let context
try {
  await mkdir(shots, { recursive: true })

  await step('GET /ui answers with the security headers', async () => {
    const response = await fetch(`${base}/ui`)
    assert.equal(response.status, 200)
    assert.match(response.headers.get('content-type') ?? '', /^text\/html/)
    const csp = response.headers.get('content-security-policy') ?? ''
    for (const part of ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"]) {
      assert.ok(csp.includes(part), `CSP lacks ${part}: ${csp}`)
    }
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff')
    assert.equal(response.headers.get('x-frame-options'), 'DENY')
  })

  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    viewport: desktop,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'
    ]
  })
  // Recorded by the page itself: the policy's own report of anything it blocked.
  await context.addInitScript(() => {
    window.__cspViolations = []
    document.addEventListener('securitypolicyviolation', e => {
      window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline code'}`)
    })
  })
  const page = context.pages()[0] ?? await context.newPage()
  page.setDefaultTimeout(15000)
  watch(page)
  const message = page.getByTestId('message')
  const row = page.getByTestId('pin-row').filter({ hasText: pinName })

  await step('a wrong password, typed with the keyboard alone, gets a clear message', async () => {
    await page.goto(`${base}/ui`)
    await page.waitForFunction(() => document.activeElement?.id === 'signin-user')
    await page.keyboard.type(user)
    await page.keyboard.press('Tab')
    await page.keyboard.type(`${password}-wrong`)
    await page.keyboard.press('Enter')
    await message.filter({ hasText: 'Wrong user name or password.' }).waitFor()
    assert.equal(await page.getByTestId('signin').isVisible(), true)
    await shot(page, '01-wrong-password.png')
  })

  await step('the right password signs in (keyboard, focus back on the password)', async () => {
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'signin-password')
    await page.keyboard.type(password) // replaces the selected wrong one
    await page.keyboard.press('Enter')
    await page.locator('#dashboard').waitFor()
    assert.match(await page.getByTestId('whoami').textContent(), new RegExp(user))
    await page.getByTestId('pins-count').filter({ hasText: /\d/ }).waitFor()
    await page.evaluate(() => { window.__notReloaded = true })
    await shot(page, '02-signed-in.png')
  })

  let pinningShot = false
  await step('the pin form, with the keyboard: CID, name, origin', async () => {
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'pin-cid')
    await page.keyboard.type(cid)
    await page.keyboard.press('Tab')
    await page.keyboard.type(pinName)
    await page.keyboard.press('Tab')
    await page.keyboard.type(origin)
    await page.keyboard.press('Tab')
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'pin-submit')
    await page.keyboard.press('Enter')
    await message.filter({ hasText: 'Pin requested' }).waitFor()
    await row.waitFor()
  })

  await step('the row reaches pinned without a reload', async () => {
    const deadline = Date.now() + 60000
    for (;;) {
      const status = await row.getAttribute('data-status')
      if (status === 'pinned') break
      if (status === 'failed') throw new Error(`the pin failed: ${await row.textContent()}`)
      if (!pinningShot && (status === 'queued' || status === 'pinning')) {
        await shot(page, '03-pinning.png')
        pinningShot = true
      }
      if (Date.now() > deadline) throw new Error(`still ${status} after 60 s: ${await row.textContent()}`)
      await page.waitForTimeout(100)
    }
    assert.equal(await page.evaluate(() => window.__notReloaded), true, 'the page was reloaded')
    const size = await row.locator('.cell-status').textContent()
    assert.match(size, /\d(\.\d)? (KiB|MiB)/, `no size shown: ${size}`)
    await shot(page, '04-pinned.png')
  })

  await step('filters: status failed hides it, a name part finds it', async () => {
    await page.getByTestId('filter-status').selectOption('failed')
    await row.waitFor({ state: 'detached' })
    await page.getByTestId('pins-empty').waitFor()
    await page.getByTestId('filter-status').selectOption('')
    await page.getByTestId('filter-name').fill(pinName.slice(3, 14).toUpperCase()) // ipartial
    await row.waitFor()
    assert.equal(await page.getByTestId('pin-row').count(), 1)
    await shot(page, '05-filtered.png')
  })

  await step('details open in a dialog and Escape closes it', async () => {
    await row.getByTestId('row-details').click()
    const dialog = page.getByTestId('details-dialog')
    await dialog.waitFor()
    const text = await dialog.textContent()
    assert.ok(text.includes(pinName), text)
    assert.ok(text.includes(origin), `origin missing from details: ${text}`)
    assert.ok(text.includes('1.0 MiB'), `size missing from details: ${text}`)
    await shot(page, '06-details.png')
    await page.keyboard.press('Escape')
    await dialog.waitFor({ state: 'hidden' })
    assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'row-details')
  })

  await step('replace with the same CID renames the pin in place', async () => {
    await row.getByTestId('row-replace').click()
    const dialog = page.getByTestId('replace-dialog')
    await dialog.waitFor()
    assert.equal(await page.getByTestId('replace-cid').inputValue(), await row.getAttribute('data-requestid'))
    await page.getByTestId('replace-name').fill(`${pinName} v2`)
    await page.getByTestId('replace-name').press('Enter')
    await dialog.waitFor({ state: 'hidden' })
    await row.filter({ hasText: `${pinName} v2` }).waitFor()
    assert.equal(await page.getByTestId('pin-row').count(), 1)
  })

  await step('at phone width nothing overflows and the form is full width', async () => {
    await page.setViewportSize(phone)
    await page.waitForTimeout(300)
    const layout = await page.evaluate(() => ({
      overflow: document.documentElement.scrollWidth - window.innerWidth,
      cid: document.getElementById('pin-cid').getBoundingClientRect().width,
      row: getComputedStyle(document.querySelector('[data-testid=pin-row]')).display
    }))
    assert.ok(layout.overflow <= 0, `page scrolls sideways by ${layout.overflow} px`)
    assert.ok(layout.cid >= 300, `CID field only ${layout.cid} px wide`)
    assert.equal(layout.row, 'block', 'table rows do not stack')
    await shot(page, '08-phone.png', { fullPage: true })
    await page.setViewportSize(desktop)
  })

  await step('admin panel, when the session is an admin', async () => {
    const admin = page.getByTestId('admin')
    const shown = await admin.isVisible()
    if (expectAdmin !== 'any') assert.equal(shown, expectAdmin === 'yes', `admin panel shown: ${shown}`)
    if (!shown) {
      console.log('  (not an admin session: no panel)')
      return
    }
    await page.locator('#overview:not([hidden]), #overview-unavailable:not([hidden])').first().waitFor()
    if (expectAdmin === 'yes') {
      await page.locator('[data-testid=peer-row]').first().waitFor()
      // The overview is sampled from the same counters as the metrics: the pin shows there too.
      await page.locator('[data-testid=stat-pinned] .stat-value').filter({ hasText: /^1$/ }).waitFor({ timeout: 30000 })
    }
    await page.waitForTimeout(300)
    await admin.screenshot({ path: path.join(shots, '09-admin.png') })
  })

  await step('remove asks for confirmation, then the row goes', async () => {
    await page.getByTestId('filter-name').fill('')
    await row.getByTestId('row-remove').click()
    const dialog = page.getByTestId('remove-dialog')
    await dialog.waitFor()
    await page.getByTestId('remove-confirm').click()
    await dialog.waitFor({ state: 'hidden' })
    await row.waitFor({ state: 'detached' })
    await message.filter({ hasText: 'Removed' }).waitFor()
    await shot(page, '07-removed.png')
  })

  await step('sign-out forgets the token; nothing was stored', async () => {
    await page.getByTestId('signout').click()
    await page.getByTestId('signin').waitFor()
    const stored = await page.evaluate(() => localStorage.length + sessionStorage.length + document.cookie.length)
    assert.equal(stored, 0)
  })

  await step('no console error, page error or CSP violation', async () => {
    const violations = await page.evaluate(() => window.__cspViolations)
    problems.push(...violations.map(v => `CSP violation: ${v}`))
    assert.deepEqual(problems, [])
  })

  console.log(`screenshots in ${shots}`)
  console.log('all operations passed')
} catch (error) {
  console.log(`not ok - ${error.stack || error}`)
  if (problems.length) console.log(`also seen:\n  ${problems.join('\n  ')}`)
  process.exitCode = 1
} finally {
  await context?.close().catch(() => {})
  await rm(profile, { recursive: true, force: true })
}
