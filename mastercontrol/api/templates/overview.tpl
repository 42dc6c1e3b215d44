% rebase('base', title='Fleet')
% q = ov.query
<h1>Fleet</h1>
<form method="get" action="/" class="filters" role="search">
  <input type="search" name="q" value="{{q.search or ''}}" placeholder="Search names" aria-label="Search client names">
  <select name="status" aria-label="Status">
    <option value="">any status</option>
% for key, label in v.STATUS_LABEL.items():
    <option value="{{key}}" {{'selected' if q.status == key else ''}}>{{label}}</option>
% end
  </select>
  <select name="tag" aria-label="Tag">
    <option value="">any tag</option>
% for tag in ov.tags:
    <option value="{{tag}}" {{'selected' if q.tag == tag else ''}}>{{tag}}</option>
% end
  </select>
% if q.sort != 'name' or q.desc:
  <input type="hidden" name="sort" value="{{q.sort}}">
  <input type="hidden" name="dir" value="{{'desc' if q.desc else 'asc'}}">
% end
  <button type="submit">Filter</button>
% if q.search or q.status or q.tag:
  <a href="/">clear</a>
% end
</form>
<section id="live" data-refresh="{{refresh}}">
<p class="counts">
  <a href="{{q.params(status=None, page=1)}}">{{ov.fleet}} clients</a>
% for key, label in v.STATUS_LABEL.items():
  <a href="{{q.params(status=key, page=1)}}" class="count"><span class="dot {{key}}"></span>{{ov.counts.get(key, 0)}} {{label}}</a>
% end
% if in_grace:
  <span class="hint">(the central just started: nobody is marked stale yet)</span>
% end
</p>
<div class="scroll">
<table class="clients">
<thead><tr>
% for key, label in (('status', 'Status'), ('name', 'Name'), ('release', 'Release'), ('cpu', 'CPU'), ('memory', 'Memory'), ('disk', 'Disk'), ('temp', 'Temp'), ('failed', 'Workloads'), ('last_seen', 'Last seen')):
  <th class="{{key}}"><a href="{{q.sort_link(key)}}">{{label}}{{(' ▼' if q.desc else ' ▲') if q.sort == key else ''}}</a></th>
% end
</tr></thead>
<tbody>
% for r in ov.rows:
<tr data-client="{{r.name}}" class="{{r.status}}">
  <td class="status"><span class="dot {{r.status}}"></span><span class="st">{{v.STATUS_LABEL.get(r.status, r.status)}}</span></td>
  <td class="name"><a href="/clients/{{r.name}}">{{r.name}}</a>
% for tag in r.tags:
    <span class="tag">{{tag}}</span>
% end
  </td>
  <td class="release">{{r.release or '–'}}</td>
  <td class="num">{{v.num(r.cpu, '%')}}</td>
  <td class="num">{{v.num(r.memory, '%')}}</td>
  <td class="num">{{v.num(r.disk, '%')}}</td>
  <td class="num">{{v.num(r.temp, '°C')}}{{!' <span class="warn" title="throttled">⚠ throttled</span>' if r.throttled else ''}}</td>
  <td class="workloads"><span class="ok">{{r.ok}} ok</span>{{!' <span class="bad">%d failed</span>' % r.failed if r.failed else ''}}</td>
  <td class="seen">{{v.ago(r.last_seen, now)}}</td>
</tr>
% end
% if not ov.rows:
<tr><td colspan="9" class="empty">No client matches.</td></tr>
% end
</tbody>
</table>
</div>
<p class="pager">
% if ov.page > 1:
  <a href="{{q.params(page=ov.page - 1)}}" rel="prev">← previous</a>
% end
  page {{ov.page}} of {{ov.pages}} ({{ov.total}} shown of {{ov.fleet}})
% if ov.page < ov.pages:
  <a href="{{q.params(page=ov.page + 1)}}" rel="next">next →</a>
% end
</p>
</section>
