// The browser's end of a call's audio: getUserMedia, one RTCPeerConnection (no STUN/TURN: iceServers []),
// the offer posted once ICE gathering is complete (no trickle), the backend's answer set. The remote audio plays
// in the given <audio autoplay> element and is exposed as window.hotlineRemoteStream (the tests tap it).
//   const link = await connectCall("/api/calls/<id>/accept", { audio, onLost(reason) {...} });
//   link.answer   the backend's whole answer (besides sdp/type it may carry the call)
//   link.close()  ends it on purpose (onLost is not called then)
import { post } from "/static/console.js";

const GATHER_TIMEOUT_MS = 5000; // host candidates only: gathering takes milliseconds; never wait for ever
const DISCONNECTED_GRACE_MS = 4000; // "disconnected" may recover by itself; this long and it counts as lost

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, GATHER_TIMEOUT_MS);
  });
}

function micError(error) {
  const why = {
    NotAllowedError: "浏览器未允许使用麦克风",
    NotFoundError: "没有找到麦克风",
    NotReadableError: "麦克风被其他程序占用",
  }[error && error.name];
  return new Error(why || `无法打开麦克风（${(error && error.message) || error}）`);
}

export async function connectCall(path, { audio = null, onLost = null } = {}) {
  let mic;
  try {
    mic = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    throw micError(error);
  }
  const pc = new RTCPeerConnection({ iceServers: [] });
  let closing = false;
  let reported = false;
  let graceTimer = null;
  let remote = null;

  function lost(reason) {
    if (closing || reported) return;
    reported = true;
    if (onLost) onLost(reason);
  }

  for (const track of mic.getTracks()) pc.addTrack(track, mic);
  pc.addEventListener("track", (event) => {
    remote = event.streams[0] || new MediaStream([event.track]);
    window.hotlineRemoteStream = remote;
    if (audio) {
      audio.srcObject = remote;
      audio.play().catch(() => {}); // autoplay: the click that started this call allows it
    }
    event.track.addEventListener("ended", () => lost("ended"));
  });
  pc.addEventListener("connectionstatechange", () => {
    const state = pc.connectionState;
    clearTimeout(graceTimer);
    if (state === "failed" || state === "closed") lost(state);
    else if (state === "disconnected") graceTimer = setTimeout(() => lost("disconnected"), DISCONNECTED_GRACE_MS);
  });

  // a tab closing ends the connection on purpose, so the gateway hears of it now (DTLS close) rather than when
  // its connectivity checks give up; the call side then puts the caller back in the queue
  const onPageHide = () => {
    closing = true;
    pc.close();
  };
  window.addEventListener("pagehide", onPageHide);

  function close() {
    window.removeEventListener("pagehide", onPageHide);
    closing = true;
    clearTimeout(graceTimer);
    for (const track of mic.getTracks()) track.stop();
    pc.close();
    if (window.hotlineRemoteStream === remote) window.hotlineRemoteStream = null;
    if (audio && audio.srcObject === remote) audio.srcObject = null;
  }

  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const answer = await post(path, { sdp: pc.localDescription.sdp, type: "offer" });
    if (!answer || typeof answer.sdp !== "string") throw new Error("服务端没有返回语音连接应答");
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    for (const sender of pc.getSenders()) {
      // the far end closing DTLS (a gateway hanging up our leg) shows here first
      if (sender.transport) {
        sender.transport.addEventListener("statechange", () => {
          const state = sender.transport.state;
          if (state === "closed" || state === "failed") lost(`dtls-${state}`);
        });
      }
    }
    return { pc, answer, close };
  } catch (error) {
    close();
    throw error;
  }
}
