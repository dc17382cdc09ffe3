// The portal's one script: the passkey ceremonies, which only the browser's WebAuthn API can
// perform. Every other page is plain HTML and works without it. Loaded from this node only
// (script-src 'self'), and it sends nothing anywhere but this node.
"use strict";

(function () {
  const status = document.getElementById("passkey-status");
  function say(text) {
    if (status) status.textContent = text;
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error((answer.error && answer.error.message) || "the node refused");
    }
    return answer;
  }

  function supported() {
    if (window.PublicKeyCredential && PublicKeyCredential.parseRequestOptionsFromJSON) return true;
    say("This browser cannot use passkeys. Use a current Chrome, Edge, Firefox or Safari.");
    return false;
  }

  // After signing in: a form kept from an ended session gets the new session's token and waits
  // for the person to check it and send it; otherwise the page they were going to opens.
  function resume(answer, next) {
    const kept = document.getElementById("kept-form");
    if (kept) {
      kept.querySelector("input[name=csrf]").value = answer.csrf;
      const send = document.getElementById("kept-send");
      send.disabled = false;
      send.focus();
      say("Signed in. Check what you typed, then send it.");
      return;
    }
    window.location.assign(next || answer.next || "/portal");
  }

  const signIn = document.getElementById("passkey-sign-in");
  if (signIn) {
    signIn.addEventListener("click", async function () {
      if (!supported()) return;
      signIn.disabled = true;
      try {
        say("Waiting for your passkey…");
        const options = await post("/portal/passkey/sign-in/options", {});
        const credential = await navigator.credentials.get({
          publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options),
        });
        const answer = await post("/portal/passkey/sign-in", credential.toJSON());
        say("Signed in.");
        resume(answer, signIn.dataset.next);
      } catch (error) {
        say("Signing in did not work: " + error.message);
      } finally {
        signIn.disabled = false;
      }
    });
  }

  // The care team's alerts, live: each change on the feed redraws the table from the server.
  const live = document.getElementById("alerts");
  if (live && live.dataset.stream && window.EventSource) {
    const liveStatus = document.getElementById("live-status");
    const source = new EventSource(live.dataset.stream);
    const refresh = async function () {
      const response = await fetch(window.location.pathname, { credentials: "same-origin" });
      if (!response.ok) return;
      const fresh = new DOMParser()
        .parseFromString(await response.text(), "text/html")
        .getElementById("alerts");
      if (fresh) live.replaceChildren(...fresh.childNodes);
      if (liveStatus) liveStatus.textContent = "Alerts updated at " + new Date().toLocaleTimeString();
    };
    source.addEventListener("changed", refresh);
  }

  // The scan page: where the browser can read barcodes from a camera (BarcodeDetector, on
  // phones), a button scans the pack's DataMatrix into the field and sends it. Elsewhere the
  // field takes a keyboard-wedge scanner's input, as it does without this script.
  const scanField = document.getElementById("code");
  const scanForm = scanField && scanField.form;
  if (scanForm && scanForm.classList.contains("scan") && "BarcodeDetector" in window &&
      navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
    const camera = document.createElement("button");
    camera.type = "button";
    camera.textContent = "Scan with the camera";
    const video = document.createElement("video");
    video.setAttribute("playsinline", "");
    video.muted = true;
    video.hidden = true;
    video.className = "camera";
    scanForm.append(camera, video);
    camera.addEventListener("click", async function () {
      let stream;
      try {
        const detector = new BarcodeDetector({ formats: ["data_matrix", "qr_code"] });
        stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
        video.srcObject = stream;
        video.hidden = false;
        await video.play();
        camera.disabled = true;
        for (;;) {
          const codes = await detector.detect(video);
          if (codes.length > 0) {
            scanField.value = codes[0].rawValue;
            scanForm.submit();
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, 150));
        }
      } catch (error) {
        camera.disabled = false;
        camera.textContent = "The camera could not scan: " + error.message;
      } finally {
        if (stream) stream.getTracks().forEach((track) => track.stop());
      }
    });
  }

  const register = document.getElementById("passkey-register");
  if (register) {
    register.addEventListener("click", async function () {
      if (!supported()) return;
      register.disabled = true;
      try {
        say("Follow your device's steps to make the passkey…");
        const invitation = register.dataset.invitation;
        const options = await post("/portal/passkey/register/options", { invitation: invitation });
        const credential = await navigator.credentials.create({
          publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options),
        });
        const answer = await post("/portal/passkey/register", credential.toJSON());
        say("Your passkey is made, and you are signed in.");
        resume(answer, "/portal");
      } catch (error) {
        say("Making the passkey did not work: " + error.message);
        register.disabled = false;
      }
    });
  }
})();
