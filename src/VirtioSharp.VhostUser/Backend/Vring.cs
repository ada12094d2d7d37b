using System.Diagnostics;
using Microsoft.Extensions.Logging;
using VirtioSharp.Host;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// One vring as the front-end configured it, and while started the worker thread that owns its queue: it polls the
/// kick eventfd, a stop eventfd, a wake eventfd (device-initiated work, <see cref="Devices.DeviceContext{TMem}.Wake"/>)
/// and the device's own event sources, with the device's next timer as the timeout, and hands each round to
/// <see cref="VirtioDeviceHost{TMem}.ServiceQueue"/>. No busy loop (unless --poll-us asks for a bounded one), no call the
/// front-end can stall.
/// </summary>
internal sealed class Vring : IDisposable
{
    private const int Fixed = 3;   // kick, stop, wake
    private readonly EventFd _wake = EventFd.Create(nonBlocking: true);
    private Thread? _worker;
    private EventFd? _stop;
    private volatile bool _stopRequested;
    [ThreadStatic] private static Vring? t_current;

    public Vring(int index) => Index = index;

    public int Index { get; }
    public ushort Num;
    public ulong DescAddr, UsedAddr, AvailAddr;
    public bool AddrSet;
    /// <summary>SET_VRING_ADDR's VHOST_VRING_F_LOG and log_guest_addr (vhost-user.rst "Migration").</summary>
    public bool LogUsed;
    public ulong LogGuestAddr;
    /// <summary>Split: next avail index. Packed: QEMU 7.2's encoding (see <see cref="Protocol.VringBase"/>).</summary>
    public uint Base;
    public bool Enabled;
    /// <summary>Used entries the last run could not publish (see <see cref="DeviceQueue{TMem}.UnpublishedUsed"/>): the next start publishes them first.</summary>
    public UsedElement[]? Unpublished;
    public EventFd? Kick, Call, Err;
    public DeviceQueue<DeviceMemory<TranslatorRef, RamPort>>? Queue;

    public bool Started => _worker is not null;

    /// <summary>On a ring worker: true once its ring is being stopped, so waits inside a round (IOTLB misses) give up.</summary>
    public static bool CurrentStopRequested => t_current?._stopRequested ?? false;

    /// <summary>Called by <see cref="Stop"/> after the stop is requested and before it waits for the worker: wakes waits that cannot see the stop eventfd.</summary>
    public Action? Interrupt { get; set; }
    public bool EverStarted { get; private set; }
    public long Kicks, Polled;

    /// <summary>Any thread: the owner thread should look at its mailbox.</summary>
    public void Wake() => _wake.Signal();

    /// <summary>
    /// Starts the owner thread. It builds and restores the queue itself (<paramref name="prepare"/>: ring checks may
    /// wait for IOTLB updates, which only the message loop can deliver), installs it in the host, serves once at once
    /// (the ring may already hold requests), then on every event.
    /// </summary>
    public void Start(VirtioDeviceHost<DeviceMemory<TranslatorRef, RamPort>> host, Func<Vring, Prepared> prepare, ILogger log, long pollTicks = 0)
    {
        _stop = EventFd.Create();
        _stopRequested = false;
        EverStarted = true;
        var kick = Kick!;
        var stop = _stop;
        var t = new Thread(() =>
        {
            t_current = this;
            try
            {
                var p = prepare(this);
                if (p.Queue is null)
                {
                    // No failure: the ring was paused while its start waited for a translation; the next start tries again.
                    if (p.Failure is null) { log.LogDebug("vring {Index}: start cut short by a pause", Index); return; }
                    host.SetNeedsReset(p.Failure, Index);
                    return;
                }
                Queue = p.Queue;
                if (!host.StartQueue(Index, p.Queue)) return;
                log.LogInformation("vring {Index} started: {Layout} size {Num}, {Position}", Index, p.Queue.IsPacked ? "packed" : "split", Num, p.Position);
                try { Serve(host, kick, stop, p.SignalAtStart, log, pollTicks); }
                // However the loop ended, the device finishes its I/O on this ring here, before the memory can go.
                finally { host.QuiesceQueue(Index); }
            }
            catch (Exception e) { log.LogError(e, "vring {Index}: worker failed", Index); host.SetNeedsReset($"vring {Index}: worker failed: {e.Message}", Index); }
        }) { IsBackground = true, Name = $"vring{Index}" };
        _worker = t;
        t.Start();
    }

    /// <summary>A queue built and restored by its worker, or why it could not be (neither: a pause cut the start short).</summary>
    public readonly record struct Prepared(DeviceQueue<DeviceMemory<TranslatorRef, RamPort>>? Queue, bool SignalAtStart, string Position, string? Failure);

    private void Serve(VirtioDeviceHost<DeviceMemory<TranslatorRef, RamPort>> host, EventFd kick, EventFd stop, bool signalAtStart, ILogger log, long pollTicks)
    {
        if (signalAtStart) SignalCall();
        Span<LibC.PollFd> fds = stackalloc LibC.PollFd[Fixed + 16];
        var sources = Array.Empty<DeviceEventSource>();
        int version = -1;
        bool kicked = true;   // a ring that starts may already hold requests (a restart, or kicks before the start)
        bool active = true;   // the last wait ended with work, not with the device's timer
        bool polled = false;  // this round's work was found by spinning, not by a kick
        while (true)
        {
            if (polled) Interlocked.Increment(ref Polled);
            else if (kicked) Interlocked.Increment(ref Kicks);
            polled = false;
            host.ServiceQueue(Index, kicked);
            if (Queue is { IsBroken: true }) return;   // the host has set DEVICE_NEEDS_RESET
            var (now, v) = host.EventSources(Index);
            if (v != version)
            {
                if (now.Length > fds.Length - Fixed) { host.SetNeedsReset($"vring {Index}: more than {fds.Length - Fixed} device event sources", Index); return; }
                (sources, version) = (now, v);
            }
            int n = Fixed + sources.Length;
            fds[0] = new LibC.PollFd { Fd = kick.Handle.Fd, Events = LibC.POLLIN };
            fds[1] = new LibC.PollFd { Fd = stop.Handle.Fd, Events = LibC.POLLIN };
            fds[2] = new LibC.PollFd { Fd = _wake.Handle.Fd, Events = LibC.POLLIN };
            for (int i = 0; i < sources.Length; i++) fds[Fixed + i] = new LibC.PollFd { Fd = (int)sources[i].Handle.DangerousGetHandle(), Events = LibC.POLLIN };
            int timeout = host.MillisecondsToDeadline(Index);
            int r = 0;
            if (pollTicks > 0 && active && timeout != 0)
            {
                // Never past the device's next timer.
                long ticks = timeout > 0 ? Math.Min(pollTicks, timeout * Stopwatch.Frequency / 1000) : pollTicks;
                int spun = Spin(fds[..n], ticks);
                if (spun == SpinFoundRing) { kicked = polled = true; continue; }
                r = spun;
                if (r == 0) timeout = host.MillisecondsToDeadline(Index);   // the spin used part of it
            }
            if (r == 0) r = Poll(fds[..n], timeout);
            if (r < 0) { host.SetNeedsReset($"vring {Index}: poll failed: {LibC.Describe(-r)}", Index); return; }
            active = r > 0;
            if (fds[1].REvents != 0) return;
            kicked = false;
            if (fds[0].REvents != 0)
            {
                // A kick fd that reports an error or hang-up, or is readable without a counter, would spin this loop.
                // EAGAIN is only a race with another reader (the peer itself): nothing to do this round.
                ulong count = 0;
                int err = (fds[0].REvents & (LibC.POLLERR | LibC.POLLHUP | LibC.POLLNVAL)) != 0 ? LibC.EBADF : kick.Read(out count);
                if (err == LibC.EAGAIN) { kicked = false; }
                else if (err != 0 || count == 0)
                {
                    log.LogError("vring {Index}: kick fd is not a working eventfd (poll events 0x{Events:x}); stopping the ring", Index, fds[0].REvents);
                    host.SetNeedsReset($"vring {Index}: kick fd is not a working eventfd", Index);
                    return;
                }
                else kicked = true;
            }
            if (fds[2].REvents != 0) _wake.Drain();
            for (int i = 0; i < sources.Length; i++)
                if (fds[Fixed + i].REvents != 0) sources[i].OnReadable();
        }
    }

    private const int SpinFoundRing = int.MaxValue;

    /// <summary>
    /// --poll-us: spins up to <paramref name="ticks"/> with the ring's notifications off, looking at the avail ring and
    /// (poll with a zero timeout) at every fd. Returns <see cref="SpinFoundRing"/> when the driver made chains available,
    /// poll's result when an fd became ready (notifications still off: the round that follows turns them on again), or
    /// 0 after the time with notifications on again and the ring re-checked empty, so the caller may sleep.
    /// </summary>
    private int Spin(Span<LibC.PollFd> fds, long ticks)
    {
        var q = Queue;
        if (q is null || q.IsBroken) return 0;
        q.DisableNotifications();
        long end = Stopwatch.GetTimestamp() + ticks;
        do
        {
            if (q.HasAvailable()) return SpinFoundRing;
            int r = Poll(fds, 0);
            if (r != 0) return r;
        } while (Stopwatch.GetTimestamp() < end && !_stopRequested);
        // The lost-wakeup re-check (§2.7.10): chains that came as notifications went back on are served, not slept on.
        return q.EnableNotifications() ? SpinFoundRing : 0;
    }

    private static unsafe int Poll(Span<LibC.PollFd> fds, int timeoutMs)
    {
        while (true)
        {
            int r;
            fixed (LibC.PollFd* p = fds) r = LibC.Poll(p, (nuint)fds.Length, timeoutMs);
            if (r >= 0) return r;
            int e = LibC.Errno;
            if (e != LibC.EINTR) return -e;
        }
    }

    /// <summary>Stops the worker after its current round; afterwards no guest memory is touched for this ring.</summary>
    public void Stop()
    {
        if (_worker is null) return;
        _stopRequested = true;
        _stop!.Signal();
        Interrupt?.Invoke();
        if (_worker != Thread.CurrentThread) Join(_worker);
        _worker = null;
        _stop.Dispose();
        _stop = null;
    }

    // After the fd checks the only call a worker can block in is a write to a call/err eventfd whose counter the peer
    // filled after making the fd blocking again (the flag is in the open file it shares). Reading that counter (never
    // blocking: RWF_NOWAIT) releases the write, whose own 1 then stays pending for the front-end. Reads of the kick fd
    // never block, so nothing here writes to a peer fd.
    private void Join(Thread worker)
    {
        while (!worker.Join(100))
        {
            Call?.DrainIfReadable();
            Err?.DrainIfReadable();
        }
    }

    public void SignalCall() => Call?.Signal();

    public void Dispose()
    {
        Stop();
        Kick?.Dispose(); Call?.Dispose(); Err?.Dispose();
        Kick = Call = Err = null;
        _wake.Dispose();
    }
}
