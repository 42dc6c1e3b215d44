% rebase('base', title='Events')
<h1>Events{{(' of ' + client) if client else ''}}</h1>
% if client:
<p><a href="/events">all clients</a></p>
% end
<section id="live" data-refresh="{{refresh}}">
<div class="scroll">
<table class="events">
<thead><tr><th>When (UTC)</th><th>Event</th><th>Client</th><th>Workload</th><th>Who</th><th>Result</th></tr></thead>
<tbody>
% for e in events:
<tr class="{{e['kind']}}">
  <td class="when">{{v.clock_time(e['at'])}}</td>
  <td><span class="pill {{e['kind']}}">{{e['kind']}}</span>{{(' ' + e['action']) if e.get('action') else ''}}</td>
  <td>
%   if e.get('client'):
    <a href="/clients/{{e['client']}}">{{e['client']}}</a> <a class="hint" href="/events?client={{e['client']}}">(events)</a>
%   end
  </td>
  <td>{{e.get('workload') or ''}}</td>
  <td>{{e.get('actor') or ''}}</td>
  <td>{{' — '.join(x for x in (e.get('result'), e.get('detail')) if x)}}</td>
</tr>
% end
% if not events:
<tr><td colspan="6" class="empty">No events.</td></tr>
% end
</tbody>
</table>
</div>
% if len(events) == 100:
<p class="pager"><a href="?{{'client=' + client + '&' if client else ''}}before={{events[-1]['id']}}">older →</a></p>
% end
</section>
