// A soft ring tone made with WebAudio (no audio files): two short 440+480 Hz bursts every 3 s while ringing.
// Browsers start an AudioContext only after a click on the page; call unlock() from one (示闲 does).
let context = null;

export function unlock() {
  if (!context) context = new AudioContext();
  if (context.state === "suspended") context.resume().catch(() => {});
  return context;
}

function burst(at, seconds) {
  const gain = context.createGain();
  gain.gain.setValueAtTime(0, at);
  gain.gain.linearRampToValueAtTime(0.06, at + 0.03);
  gain.gain.setValueAtTime(0.06, at + seconds - 0.05);
  gain.gain.linearRampToValueAtTime(0, at + seconds);
  gain.connect(context.destination);
  for (const hz of [440, 480]) {
    const tone = context.createOscillator();
    tone.frequency.value = hz;
    tone.connect(gain);
    tone.start(at);
    tone.stop(at + seconds);
  }
}

export class Ringer {
  constructor() {
    this.timer = null;
  }

  get ringing() {
    return this.timer !== null;
  }

  start() {
    if (this.timer !== null) return;
    const ring = () => {
      try {
        const ctx = unlock();
        const now = ctx.currentTime + 0.05;
        burst(now, 0.4);
        burst(now + 0.6, 0.4);
      } catch (_) {
        // no audio output: the ringing card is still shown
      }
    };
    ring();
    this.timer = setInterval(ring, 3000);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }
}
