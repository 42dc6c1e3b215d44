% rebase('base', title=c.name)
<h1><span class="dot {{status}}"></span> {{c.name}} <small>{{v.STATUS_LABEL.get(status, status)}}</small></h1>
<section id="live" data-refresh="{{refresh}}">
<dl class="facts">
  <dt>Host</dt><dd>{{c.host or '–'}}</dd>
  <dt>Release</dt><dd>{{c.release or '–'}}</dd>
  <dt>Daemon</dt><dd>{{c.daemon_version or '–'}}</dd>
  <dt>Last seen</dt><dd>{{v.ago(c.last_seen, now)}}</dd>
  <dt>Tags</dt><dd>{{', '.join(c.tags) or '–'}}</dd>
  <dt>CPU</dt><dd>{{v.num(row.cpu, '%')}}</dd>
  <dt>Memory</dt><dd>{{v.num(row.memory, '%')}}</dd>
  <dt>Disk</dt><dd>{{v.num(row.disk, '%')}}</dd>
  <dt>Temperature</dt><dd>{{v.num(row.temp, '°C')}}{{!' <span class="warn">⚠ throttled</span>' if row.throttled else ''}}</dd>
</dl>
<h2>Last {{hours}} hours</h2>
<div class="charts">
% for ch in charts:
<figure class="chart">
  <figcaption>{{ch.title}} <b>{{v.num(ch.latest, ch.unit, 1)}}</b></figcaption>
  <svg viewBox="0 0 {{v.CHART_W}} {{v.CHART_H}}" width="{{v.CHART_W}}" height="{{v.CHART_H}}" role="img" aria-label="{{ch.title}}, {{ch.samples}} samples">
    <rect class="frame" x="0" y="0" width="{{v.CHART_W}}" height="{{v.CHART_H}}"></rect>
%   if ch.points:
    <polyline class="line" points="{{ch.points}}"></polyline>
%   else:
    <text class="none" x="{{v.CHART_W // 2}}" y="{{v.CHART_H // 2}}" text-anchor="middle">{{'one sample' if ch.samples == 1 else 'no history yet'}}</text>
%   end
  </svg>
%   if ch.samples:
  <span class="range">{{v.num(ch.lo, ch.unit)}} – {{v.num(ch.hi, ch.unit)}} · from {{v.hh_mm(ch.start)}} UTC ({{ch.samples}} {{'sample' if ch.samples == 1 else 'samples'}})</span>
%   end
</figure>
% end
</div>
<h2>Workloads</h2>
<div class="scroll">
<table class="workloads">
<thead><tr><th>Name</th><th>State</th><th>PID</th><th>Uptime</th><th>Runs</th><th>Last exit</th><th>Actions</th></tr></thead>
<tbody>
% for w in workloads:
<tr data-workload="{{w['name']}}">
  <td class="name"><a href="?log={{w['name']}}">{{w['name']}}</a></td>
  <td class="state"><span class="state {{str(w.get('state', '')).lower()}}">{{w.get('state')}}</span></td>
  <td class="pid">{{w.get('pid') or '–'}}</td>
  <td class="uptime">{{v.duration(w['uptime']) if w.get('pid') else '–'}}</td>
  <td class="num">{{w.get('runs') if w.get('runs') is not None else '–'}}</td>
  <td class="exit">{{w['exit'] or '–'}}</td>
  <td class="actions">
%   if not w.get('internal'):
%     for action in actions:
    <form method="post" action="/clients/{{c.name}}/workloads/{{w['name']}}/{{action}}">
      <input type="hidden" name="csrf" value="{{csrf}}">
      <button type="submit" class="{{action}}" name="do" value="{{action}}">{{action}}</button>
    </form>
%     end
%   else:
    <span class="hint">internal</span>
%   end
  </td>
</tr>
% end
% if not workloads:
<tr><td colspan="7" class="empty">No workloads reported.</td></tr>
% end
</tbody>
</table>
</div>
% if log_name:
<h2>Log: {{log_name}}</h2>
%   if log_error:
<p class="hint">{{log_error}}</p>
%   else:
<pre class="log">{{'\n'.join(log_lines) or '(empty)'}}</pre>
%   end
% end
</section>
