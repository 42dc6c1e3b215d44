% rebase('base', title='Not found')
<section>
<h1>Not found</h1>
<p>{{what}}</p>
<p><a href="/">Back to the fleet</a></p>
</section>
