% rebase('base', title='Deployment %d' % d['id'])
<p><a href="/deployments">← all deployments</a></p>
<section id="live" data-refresh="{{refresh}}">
% include('deployment_body', d=d)
</section>
