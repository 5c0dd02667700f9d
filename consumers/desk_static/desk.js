// The desk refreshes its counts, map and list every 10 seconds without reloading the page (and without moving the
// keyboard focus when it sits inside the list).
(function () {
  const bureau = document.getElementById("bureau");
  if (!bureau) return;
  async function refresh() {
    try {
      const response = await fetch(bureau.dataset.source, { headers: { "Accept": "text/html" } });
      if (response.status === 401) {  // the session ended (expired, revoked): back to the login, then here
        window.location.assign("/connexion?suite=" + encodeURIComponent(window.location.pathname));
        return;
      }
      if (!response.ok) return;
      const html = await response.text();
      if (!bureau.contains(document.activeElement)) bureau.innerHTML = html;
    } catch (error) {
      // the desk keeps the last list shown; the next refresh tries again
    }
  }
  setInterval(refresh, 10000);
})();
