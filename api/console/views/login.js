// Log in: username and password; the one-time code field appears when the
// API answers that the account needs one (CITYSYNC_ERR_AUTH_TOTP_REQUIRED).

import { ApiError, get, post } from '../api.js'
import { field, fill, h, notice } from '../dom.js'
import { t } from '../i18n.js'

const MESSAGES = {
  CITYSYNC_ERR_AUTH_INVALID: 'login.invalid',
  CITYSYNC_ERR_AUTH_TOTP_REQUIRED: 'login.totpRequired',
  CITYSYNC_ERR_AUTH_TOTP_INVALID: 'login.totpInvalid',
  CITYSYNC_ERR_AUTH_LOCKED: 'login.locked',
}

export function loginView({ onLoggedIn, sessionEnded = false }) {
  const username = h('input', { name: 'username', autocomplete: 'username', required: true, testid: 'login-username', autofocus: true })
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true, testid: 'login-password' })
  const totp = h('input', { name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: 6, testid: 'login-totp' })
  const totpField = field(t('login.totp'), totp, t('login.totpHint'))
  totpField.hidden = true
  const message = h('div', { class: 'login-message' }, sessionEnded ? notice('info', t('app.sessionExpired'), 'login-session-ended') : null)
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'login-submit' }, t('login.submit'))

  async function onsubmit(ev) {
    ev.preventDefault()
    submit.disabled = true
    fill(message)
    const body = { username: username.value.trim(), password: password.value }
    if (!totpField.hidden && totp.value.trim() !== '') body.totp = totp.value.trim()
    try {
      await post('/auth/login', body)
      onLoggedIn(await get('/auth/me'))
    } catch (err) {
      const code = err instanceof ApiError ? err.code : ''
      if (code === 'CITYSYNC_ERR_AUTH_TOTP_REQUIRED') {
        totpField.hidden = false
        totp.focus()
      }
      const key = MESSAGES[code] ?? (err instanceof ApiError && err.status === 429 ? 'login.rateLimited' : null)
      const kind = code === 'CITYSYNC_ERR_AUTH_TOTP_REQUIRED' ? 'info' : 'error'
      fill(message, notice(kind, key === null ? t('app.error', { message: err.message }) : t(key), code === 'CITYSYNC_ERR_AUTH_LOCKED' ? 'login-locked' : 'login-error'))
    } finally {
      submit.disabled = false
    }
  }

  const form = h(
    'form',
    { class: 'login card', testid: 'login-form', onsubmit },
    h('h1', {}, t('login.title')),
    field(t('login.username'), username),
    field(t('login.password'), password),
    totpField,
    message,
    submit,
  )
  return { el: form }
}
