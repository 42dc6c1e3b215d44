<article class="deployment">
<h2><a href="/deployments/{{d['id']}}">Deployment {{d['id']}}</a> <span class="pill {{d['status']}}">{{d['status']}}</span></h2>
<p class="meta">release <b>{{d['release'] or '–'}}</b> · by {{d['actor'] or '–'}} · started {{v.clock_time(d['created_at'])}} · updated {{v.ago(d['updated_at'], now)}}</p>
% if d.get('message'):
<p class="message">{{d['message']}}</p>
% end
% for b in d['batches']:
<div class="batch">
  <h3>Batch {{b['index'] + 1}} <span class="pill {{b['status']}}">{{b['status']}}</span></h3>
  <ul class="results">
%   for c in b['clients']:
    <li><a href="/clients/{{c['name']}}">{{c['name']}}</a> <span class="pill {{c['status']}}">{{c['status']}}</span>{{(' — ' + c['message']) if c.get('message') else ''}}</li>
%   end
  </ul>
</div>
% end
% if not d['batches']:
<p class="hint">No batches recorded.</p>
% end
</article>
