% rebase('base', title='Refused', nav=bool(csrf))
<section>
<h1>Refused</h1>
<p class="flash error" role="alert">{{why}}</p>
<p><a href="/">Back to the fleet</a></p>
</section>
