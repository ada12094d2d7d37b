using System.Runtime.InteropServices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Interop;

namespace VirtioSharp.Storage;

/// <summary>
/// aio=threads: requests collected by Submit go to a small worker pool at Kick (one lock for the batch); workers run
/// them with preadv2/pwritev2/fallocate/fdatasync and signal the queue's eventfd, which is the CompletionEvent.
/// </summary>
internal sealed class ThreadedFileQueue : FileQueue
{
    private readonly EventFd _event = EventFd.Create(nonBlocking: true);
    private readonly FileWorkerPool _pool;
    private readonly int[] _pending, _taken;
    private int _pendingCount;
    private readonly TimeSpan _drainTimeout;

    public ThreadedFileQueue(FileTarget target, int queue, int depth, int threads, int bounceSize, TimeSpan drainTimeout, Action<FileQueue> onDispose)
        : base(target, depth, onDispose)
    {
        _pending = new int[depth];
        _taken = new int[depth];
        _drainTimeout = drainTimeout;
        try { _pool = new FileWorkerPool(target, Table.Slots, _event, Math.Clamp(threads, 1, depth), bounceSize, $"blk-q{queue}"); }
        catch { _event.Dispose(); throw; }
    }

    public override SafeHandle? CompletionEvent => _event.Handle;
    public override FileAioMode Mode => FileAioMode.Threads;

    protected override void Start(int slot) => _pending[_pendingCount++] = slot;

    public override void Kick()
    {
        _pool.Post(_pending.AsSpan(0, _pendingCount));
        _pendingCount = 0;
        if (HasImmediate) _event.Signal();
    }

    public override int Reap(Span<BlockCompletion> completions)
    {
        // Clear the eventfd before looking: a completion that lands after this read signals it again.
        _event.Drain();
        int n = 0;
        ReapImmediate(completions, ref n);
        int k = _pool.Take(_taken.AsSpan(0, Math.Min(_taken.Length, completions.Length - n)), out bool more);
        for (int i = 0; i < k; i++) Complete(_taken[i], completions, ref n);
        // Left behind for lack of room: stay readable so the device comes back.
        if (more || HasImmediate) _event.Signal();
        return n;
    }

    public override bool WaitForCompletions(int timeoutMs)
    {
        if (HasImmediate || _pool.HasDone) return true;
        if (InFlight == 0) return false;
        var h = _event.Handle;
        return EventFd.WaitAny(new ReadOnlySpan<SafeFd>(in h), timeoutMs) >= 0;
    }

    protected override void Release()
    {
        Kick();   // anything submitted but not kicked still has to run (and finish) before the slots go
        Drain(_drainTimeout);
        _pool.Stop(TimeSpan.FromSeconds(1));
        _pool.Dispose();
        _event.Dispose();
    }
}
