% rebase('base', title='Deployments')
<h1>Deployments</h1>
<section id="live" data-refresh="{{refresh}}">
% for d in deployments:
% include('deployment_body', d=d)
% end
% if not deployments:
<p class="empty">No deployments recorded yet (<code>fab deploy</code> records them).</p>
% end
<p class="pager">
% if offset > 0:
  <a href="?offset={{max(offset - 50, 0)}}">← newer</a>
% end
% if more:
  <a href="?offset={{offset + 50}}">older →</a>
% end
</p>
</section>
