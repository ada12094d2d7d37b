using Microsoft.Extensions.Logging;
using VirtioSharp.Devices;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.VhostUser.Interop;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// One vring as the front-end configured it, and the worker thread that serves it while started: the worker waits on
/// the kick eventfd (poll, no busy loop) and a stop eventfd, and runs the device model's queue handler.
/// </summary>
internal sealed class Vring : IDisposable
{
    public Vring(int index) => Index = index;

    public int Index { get; }
    public ushort Num;
    public ulong DescAddr, UsedAddr, AvailAddr;
    public bool AddrSet;
    /// <summary>Split: next avail index. Packed: QEMU's encoding (avail idx | wrap << 15 | used idx << 16 | wrap << 31).</summary>
    public uint Base;
    public bool Enabled;
    public EventFd? Kick, Call, Err;
    public DeviceQueue<DeviceMemory<TranslatorRef, RamPort>>? Queue;
    public InflightQueue? Inflight;
    public PackedInflightQueue? PackedInflight;
    private Thread? _worker;
    private EventFd? _stop;

    public bool Started => _worker is not null;
    public bool EverStarted { get; private set; }

    public void Start(Action<Vring> body, ILogger log)
    {
        _stop = EventFd.Create();
        EverStarted = true;
        var t = new Thread(() =>
        {
            try { body(this); }
            catch (Exception e) { log.LogError(e, "vring {Index}: worker failed", Index); }
        }) { IsBackground = true, Name = $"vring{Index}" };
        _worker = t;
        t.Start();
    }

    /// <summary>Waits for a kick or a stop; true means kicked.</summary>
    public bool WaitKick()
    {
        var kick = Kick;
        if (kick is null || _stop is null) return false;
        int which = EventFd.WaitAny([kick.Handle, _stop.Handle], -1);
        if (which != 0) return false;
        kick.Drain();
        return true;
    }

    /// <summary>Stops the worker after its current batch; afterwards no guest memory is touched for this ring.</summary>
    public void Stop()
    {
        if (_worker is null) return;
        _stop!.Signal();
        if (_worker != Thread.CurrentThread) _worker.Join();
        _worker = null;
        _stop.Dispose();
        _stop = null;
    }

    public void SignalCall() => Call?.Signal();

    public void Dispose()
    {
        Stop();
        Kick?.Dispose(); Call?.Dispose(); Err?.Dispose();
        Kick = Call = Err = null;
    }
}
