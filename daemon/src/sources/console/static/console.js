// The console's one script, loaded from /ui/ (the CSP allows no other and
// no inline script). Every page works without it: it only asks before a
// request is rejected, which cannot be undone.
"use strict";
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[name=decision][value=reject]");
  if (button && !window.confirm("Reject this request? This cannot be undone.")) {
    event.preventDefault();
  }
});
