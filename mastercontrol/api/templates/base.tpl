<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
% if get('csrf'):
<meta name="csrf-token" content="{{csrf}}">
% end
<title>{{title}} · Master Control</title>
<link rel="stylesheet" href="/static/dashboard.css">
% if refresh:
<script src="/static/dashboard.js" defer></script>
<noscript><meta http-equiv="refresh" content="30"></noscript>
% end
</head>
<body>
<header class="top">
  <a class="brand" href="/">Master Control</a>
% if get('nav', True):
  <nav>
    <a href="/">Fleet</a>
    <a href="/deployments">Deployments</a>
    <a href="/events">Events</a>
  </nav>
%   if auth:
  <form method="post" action="/logout" class="logout">
    <input type="hidden" name="csrf" value="{{csrf}}">
    <button type="submit">Log out</button>
  </form>
%   end
% end
</header>
<main>
% for kind, text in flashes:
<p class="flash {{kind}}" role="status">{{text}}</p>
% end
{{!base}}
</main>
</body>
</html>
