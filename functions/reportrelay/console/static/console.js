// reportrelay console: follows unfinished jobs through the job API's JSON routes (same origin, the
// session cookie), and fills the start form from a saved request file. No inline code: the page's
// Content-Security-Policy allows scripts from this origin only.
"use strict";

const POLL_MS = 2000;
const FINAL = ["ready", "failed", "cancelled"];

function api() {
  return document.body.dataset.api;
}

async function getJson(path) {
  const answer = await fetch(api() + path, {headers: {Accept: "application/json"}, credentials: "same-origin"});
  if (!answer.ok) {
    throw new Error(path + " answered " + answer.status);
  }
  return answer.json();
}

function showState(root, job) {
  root.querySelectorAll(".state").forEach((badge) => {
    badge.textContent = job.state;
    badge.className = "state " + job.state;
  });
  const percent = job.state === "ready" ? 100 : job.progress;
  root.querySelectorAll("progress.progress").forEach((bar) => {
    if (percent === null || percent === undefined) {
      bar.removeAttribute("value");
    } else {
      bar.value = percent;
    }
  });
  root.querySelectorAll(".percent").forEach((words) => {
    words.textContent = percent === null || percent === undefined ? "" : Math.round(percent) + " %";
  });
  const download = root.querySelector("a.download");
  if (download && job.links && job.links.download) {
    download.href = job.links.download;
    download.hidden = false;
  }
  if (FINAL.includes(job.state)) {
    root.querySelectorAll("form.cancel").forEach((form) => form.remove());
    if (job.state !== "ready") {
      root.querySelectorAll("progress.progress").forEach((bar) => bar.remove()); // it will go no further
    }
  }
}

function addEvent(table, event) {
  const row = table.insertRow(-1);
  row.className = "event kind-" + event.kind;
  const when = (event.at || "").replace("T", " ").replace(/\.\d+Z$/, "");
  for (const text of [when, event.step, event.message]) {
    row.insertCell(-1).textContent = text;
  }
}

async function followJob() {
  const body = document.body;
  const jobId = body.dataset.job;
  let next = body.dataset.eventsNext;
  const events = document.querySelector("#events tbody");
  let final = body.dataset.final === "true";
  while (!final) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    try {
      const answer = await getJson("/reports/" + jobId + "/events" + (next ? "?after=" + encodeURIComponent(next) : ""));
      answer.events.forEach((event) => addEvent(events, event));
      next = answer.next || next;
      const job = await getJson("/reports/" + jobId);
      showState(document, job);
      document.getElementById("polls").textContent = job.polls;
      document.getElementById("provider").textContent =
        [job.provider_status, job.message].filter((part) => part).join(" · ") || "-";
      if (FINAL.includes(job.state)) {
        final = true;
        window.location.reload(); // the server renders the file, the error and what can be done now
      }
    } catch (error) {
      console.warn("reportrelay console:", error.message);
    }
  }
}

function lastWords(job) {
  // as the server says it (reportrelay.console.latest_words)
  if (job.state === "ready" && job.object) {
    return job.object.filename + " · " + job.object.size.toLocaleString("en-US") + " bytes";
  }
  if (job.error) {
    return (job.error.code + ": " + job.error.message).slice(0, 160);
  }
  return job.message || "";
}

async function followList() {
  let rows = Array.from(document.querySelectorAll("tr.job[data-final='false']"));
  while (rows.length) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    for (const row of rows) {
      try {
        const after = row.dataset.next ? "?after=" + encodeURIComponent(row.dataset.next) : "";
        const answer = await getJson("/reports/" + row.dataset.job + "/events" + after);
        const latest = row.querySelector(".latest");
        if (answer.events.length) {
          latest.textContent = answer.events[answer.events.length - 1].message;
        }
        row.dataset.next = answer.next || row.dataset.next || "";
        const job = await getJson("/reports/" + row.dataset.job);
        showState(row, job);
        if (FINAL.includes(job.state)) {
          row.dataset.final = "true";
          latest.textContent = lastWords(job);
        }
      } catch (error) {
        console.warn("reportrelay console:", error.message);
      }
    }
    rows = rows.filter((row) => row.dataset.final === "false");
  }
}

function loadSavedRequests() {
  const picker = document.getElementById("saved-request");
  if (!picker) {
    return;
  }
  picker.addEventListener("change", async () => {
    const file = picker.files[0];
    if (!file) {
      return;
    }
    const text = await file.text();
    document.getElementById("start-request").value = text;
    try {
      const request = JSON.parse(text);
      const select = document.getElementById("start-connection");
      if (request && typeof request.connection === "string" &&
          Array.from(select.options).some((option) => option.value === request.connection)) {
        select.value = request.connection;
      }
    } catch (error) {
      // left as it is: the server names what is wrong with it
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  loadSavedRequests();
  if (document.body.dataset.job) {
    followJob();
  } else if (document.getElementById("jobs")) {
    followList();
  }
});
