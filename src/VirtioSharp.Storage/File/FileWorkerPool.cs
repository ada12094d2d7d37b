using VirtioSharp.Interop;

namespace VirtioSharp.Storage;

/// <summary>
/// Worker threads that run a queue's requests synchronously (<see cref="FileTarget.Execute"/>) and report them through
/// an eventfd: the whole engine of a threads queue, the slow path of an io_uring queue. The owner thread posts slot
/// indices and takes finished ones; each lock is held for a few stores, never across I/O.
/// </summary>
internal sealed class FileWorkerPool : IDisposable
{
    private readonly FileTarget _target;
    private readonly FileSlot[] _slots;
    private readonly EventFd _event;
    private readonly Thread[] _threads;
    private readonly AlignedBuffer?[] _bounce;
    private readonly object _workGate = new(), _doneGate = new();
    private readonly IndexRing _work, _done;
    private bool _stopping;
    private bool _leaked;

    public FileWorkerPool(FileTarget target, FileSlot[] slots, EventFd completions, int threads, int bounceSize, string name)
    {
        _target = target; _slots = slots; _event = completions;
        _work = new IndexRing(slots.Length); _done = new IndexRing(slots.Length);
        _threads = new Thread[Math.Max(1, threads)];
        _bounce = new AlignedBuffer?[_threads.Length];
        for (int i = 0; i < _threads.Length; i++)
        {
            // One aligned buffer per worker, allocated here once: a bounced request never allocates.
            if (target.Direct)
                _bounce[i] = new AlignedBuffer((nuint)Math.Max(bounceSize, (int)target.OffsetAlign) & ~(nuint)(target.OffsetAlign - 1), target.MemAlign);
            int w = i;
            _threads[i] = new Thread(() => Work(w)) { IsBackground = true, Name = $"{name}-w{i}" };
        }
        foreach (var t in _threads) t.Start();
    }

    /// <summary>Requests posted and not yet taken back (owner thread's view).</summary>
    public int Outstanding { get; private set; }

    /// <summary>Hands slots to the workers (one lock for the batch).</summary>
    public void Post(ReadOnlySpan<int> slots)
    {
        if (slots.IsEmpty) return;
        lock (_workGate)
        {
            foreach (int s in slots) _work.Push(s);
            if (slots.Length == 1) Monitor.Pulse(_workGate);
            else Monitor.PulseAll(_workGate);
        }
        Outstanding += slots.Length;
    }

    /// <summary>Moves finished slot indices into <paramref name="into"/>; returns how many, and whether more are left.</summary>
    public int Take(Span<int> into, out bool more)
    {
        int n = 0;
        lock (_doneGate)
        {
            while (n < into.Length && _done.Count > 0) into[n++] = _done.Pop();
            more = _done.Count > 0;
        }
        Outstanding -= n;
        return n;
    }

    /// <summary>Something finished and waits to be taken.</summary>
    public bool HasDone { get { lock (_doneGate) return _done.Count > 0; } }

    private void Work(int worker)
    {
        var bounce = _bounce[worker];
        while (true)
        {
            int slot;
            lock (_workGate)
            {
                while (_work.Count == 0 && !_stopping) Monitor.Wait(_workGate);
                if (_work.Count == 0) return;   // stopping, and everything posted has run
                slot = _work.Pop();
            }
            ref var s = ref _slots[slot];
            s.Error = _target.Execute(s.Request, s.Bounced, s.Resume, bounce);
            bool wasEmpty;
            lock (_doneGate)
            {
                wasEmpty = _done.Count == 0;
                _done.Push(slot);
            }
            // One signal per empty→non-empty edge: the owner drains the eventfd before it takes, so none is lost.
            if (wasEmpty) _event.Signal();
        }
    }

    /// <summary>
    /// Lets the workers finish what was posted and stop, waiting up to <paramref name="timeout"/>. A worker that does not
    /// stop may still be in a system call writing into its bounce buffer, so the buffers are then leaked, not freed.
    /// </summary>
    public bool Stop(TimeSpan timeout)
    {
        lock (_workGate) { _stopping = true; Monitor.PulseAll(_workGate); }
        var deadline = DateTime.UtcNow + timeout;
        foreach (var t in _threads)
        {
            var left = deadline - DateTime.UtcNow;
            if (!t.Join(left > TimeSpan.Zero ? left : TimeSpan.Zero)) _leaked = true;
        }
        return !_leaked;
    }

    public void Dispose()
    {
        if (!_stopping) Stop(TimeSpan.FromSeconds(30));
        if (_leaked) return;
        foreach (var b in _bounce) b?.Dispose();
    }
}
