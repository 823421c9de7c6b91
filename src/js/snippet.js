!function(w,d,s,u,n){w.utt=w.utt||function(){(w.utt.q=w.utt.q||[]).push(arguments)};if(d.querySelector('script[src="'+u+'"]'))return;s=d.createElement(s);s.type="module";s.src=u;n=d.currentScript;n&&n.nonce&&(s.nonce=n.nonce);d.head.appendChild(s)}(window,document,"script","/utt.js");
utt("init",{site:"demo",collector:""});
