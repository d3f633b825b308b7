// The console's one way to the API. The session lives in the HttpOnly cookie
// the login sets, so requests carry no token of their own. Every error
// answer is `{code, message}`; it is thrown as an ApiError. A 401 on any
// call other than the login ends the session in the console.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

let onUnauthorized = () => undefined
let clockOffsetMs = 0

/** What to do when the session is gone (show the login). */
export function whenUnauthorized(fn) {
  onUnauthorized = fn
}

/** The server's time now, from the Date header of its latest answer (ages are measured against it). */
export function serverNow() {
  return Date.now() + clockOffsetMs
}

function noteServerTime(res) {
  const date = Date.parse(res.headers.get('date') ?? '')
  if (!Number.isNaN(date)) clockOffsetMs = date - Date.now()
}

/** Query string from an object; empty and null values are left out. */
export function query(params) {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v))
  const text = q.toString()
  return text === '' ? '' : `?${text}`
}

export async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { accept: 'application/json' } }
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  let res
  try {
    res = await fetch(`/api/v1${path}`, init)
  } catch (err) {
    throw new ApiError(0, 'CITYSYNC_ERR_CONSOLE_OFFLINE', String(err?.message ?? err))
  }
  noteServerTime(res)
  const text = await res.text()
  let json = null
  try {
    json = text === '' ? null : JSON.parse(text)
  } catch {
    json = null
  }
  if (!res.ok) {
    const code = json?.code ?? `HTTP_${res.status}`
    const err = new ApiError(res.status, code, json?.message ?? (text || res.statusText))
    if (res.status === 401 && path !== '/auth/login') onUnauthorized(err)
    throw err
  }
  return json
}

export const get = (path) => api('GET', path)
export const post = (path, body) => api('POST', path, body ?? {})
export const patch = (path, body) => api('PATCH', path, body)
