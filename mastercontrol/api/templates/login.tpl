% rebase('base', title='Log in', nav=False)
<section class="login">
<h1>Log in</h1>
% if error:
<p class="flash error" role="alert">{{error}}</p>
% end
<form method="post" action="/login">
  <input type="hidden" name="csrf" value="{{csrf}}">
% if auth:
  <label for="token">Operator token</label>
  <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
  <p class="hint">The <code>central.api_token</code> (or <code>api_token_file</code>) of this control host.</p>
% else:
  <p class="hint">No operator token is configured (the central listens on loopback only).</p>
% end
  <button type="submit">Log in</button>
</form>
</section>
