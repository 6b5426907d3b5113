// The console's one script, loaded from /ui/static/ (the CSP allows no
// other and no inline script). Every page works without it: it asks
// before a request is rejected (which cannot be undone), shows an
// upload's progress and reads a chosen CSR file into its text field.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[name=decision][value=reject]");
  if (button && !window.confirm("Reject this request? This cannot be undone.")) {
    event.preventDefault();
  }
});

// A file input that fills a text field (a CSR): the form stays a plain
// one; without this script, the PEM text is pasted.
document.addEventListener("change", (event) => {
  const input = event.target;
  const target = input.dataset && input.dataset.fills && document.getElementById(input.dataset.fills);
  if (!target || !input.files || !input.files[0]) {
    return;
  }
  input.files[0].text().then((text) => { target.value = text; });
});

// The import form: sent with XMLHttpRequest to show a progress bar, then
// on to the page the server answers with (the preview, or an error).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.id !== "upload" || !window.XMLHttpRequest || !window.FormData) {
    return;
  }
  event.preventDefault();
  const bar = document.getElementById("progress");
  const button = form.querySelector("button[type=submit]");
  bar.hidden = false;
  button.disabled = true;
  const xhr = new XMLHttpRequest();
  xhr.open("POST", form.action);
  xhr.upload.addEventListener("progress", (e) => {
    if (e.lengthComputable) {
      bar.value = Math.round((100 * e.loaded) / e.total);
    }
  });
  xhr.addEventListener("load", () => {
    if (xhr.status < 400 && xhr.responseURL && xhr.responseURL !== form.action) {
      window.location.assign(xhr.responseURL);
      return;
    }
    // An error page: show it in place (parsed, so nothing in it runs).
    const page = new DOMParser().parseFromString(xhr.responseText, "text/html");
    document.querySelector("main").replaceWith(page.querySelector("main"));
  });
  xhr.addEventListener("error", () => {
    button.disabled = false;
    bar.hidden = true;
    window.alert("The upload failed: the connection was lost.");
  });
  xhr.send(new FormData(form));
});
