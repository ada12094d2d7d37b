using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Interop;

namespace VirtioSharp.Tests.Support;

/// <summary>
/// Asynchronous storage the test drives: requests wait until <see cref="Release"/> runs them (on the test's thread,
/// straight into the request's host vectors), in any order, so tests can hold I/O in flight while rings stop, IOTLBs
/// change or completions come back out of order. Completions are signalled through a real eventfd.
/// </summary>
public sealed unsafe class ManualStorage : IBlockStorage
{
    private readonly byte[] _disk;
    private readonly List<Queue> _queues = new();
    private long _size;

    public ManualStorage(int size, BlockStorageInfo? info = null, int depth = 0)
    {
        _disk = new byte[size];
        Info = info ?? new BlockStorageInfo { Size = (ulong)size, SupportsDiscard = true, SupportsWriteZeroes = true };
        _size = (long)Info.Size;   // may start smaller than the bytes behind it, to grow
        Depth = depth;
    }

    public BlockStorageInfo Info { get; }
    public byte[] Disk => _disk;
    /// <summary>Queue depth to report (0: what the device asks for).</summary>
    public int Depth { get; }
    /// <summary>Every request ever submitted, in submission order (op, flags, offset, length).</summary>
    public ConcurrentQueue<(BlockOp Op, BlockRequestFlags Flags, ulong Offset, ulong Length)> Submitted { get; } = new();
    /// <summary>Requests waiting for <see cref="Release"/>.</summary>
    public int Held { get { lock (_queues) return _queues.Sum(q => q.Held.Count); } }
    /// <summary>Completes every held request immediately from now on.</summary>
    public volatile bool AutoRelease;

    public void SetSize(long size) => Interlocked.Exchange(ref _size, size);
    public ulong QuerySize() => (ulong)Interlocked.Read(ref _size);

    public IBlockQueue OpenQueue(int queue, int depth)
    {
        var q = new Queue(this, Depth > 0 ? Depth : depth);
        lock (_queues) _queues.Add(q);
        return q;
    }

    /// <summary>Runs up to <paramref name="max"/> held requests, newest first if <paramref name="newestFirst"/>.</summary>
    public int Release(int max = int.MaxValue, bool newestFirst = false, int error = 0)
    {
        int n = 0;
        lock (_queues)
            foreach (var q in _queues)
                lock (q.Held)
                    while (n < max && q.Held.Count > 0)
                    {
                        int i = newestFirst ? q.Held.Count - 1 : 0;
                        var r = q.Held[i];
                        q.Held.RemoveAt(i);
                        q.Done.Enqueue(new BlockCompletion(r.Tag, error != 0 ? error : Run(r)));
                        n++;
                    }
        lock (_queues) foreach (var q in _queues) q.Event.Signal();
        return n;
    }

    private int Run(in BlockRequest r)
    {
        ulong off = r.Offset;
        switch (r.Op)
        {
            case BlockOp.Read:
                for (int i = 0; i < r.VectorCount; i++)
                {
                    var v = r.Vectors[i];
                    _disk.AsSpan((int)off, (int)v.Length).CopyTo(new Span<byte>((void*)v.Base, (int)v.Length));
                    off += v.Length;
                }
                return 0;
            case BlockOp.Write:
                for (int i = 0; i < r.VectorCount; i++)
                {
                    var v = r.Vectors[i];
                    new ReadOnlySpan<byte>((void*)v.Base, (int)v.Length).CopyTo(_disk.AsSpan((int)off));
                    off += v.Length;
                }
                return 0;
            case BlockOp.Discard or BlockOp.WriteZeroes:
                _disk.AsSpan((int)r.Offset, (int)r.Length).Clear();
                return 0;
            default: return 0;
        }
    }

    public void Dispose()
    {
        lock (_queues) foreach (var q in _queues) q.Dispose();
    }

    private sealed class Queue(ManualStorage owner, int depth) : IBlockQueue
    {
        public readonly List<BlockRequest> Held = new();
        public readonly ConcurrentQueue<BlockCompletion> Done = new();
        public readonly EventFd Event = EventFd.Create(nonBlocking: true);

        public SafeHandle? CompletionEvent => Event.Handle;
        public int Depth => depth;
        public int MaxVectors => 1024;

        public void Submit(in BlockRequest request)
        {
            owner.Submitted.Enqueue((request.Op, request.Flags, request.Offset, request.Length));
            lock (Held) Held.Add(request);
        }

        public void Kick()
        {
            if (owner.AutoRelease) owner.Release();
        }

        public int Reap(Span<BlockCompletion> completions)
        {
            Event.Drain();
            int n = 0;
            while (n < completions.Length && Done.TryDequeue(out var c)) completions[n++] = c;
            return n;
        }

        public bool WaitForCompletions(int timeoutMs)
        {
            if (!Done.IsEmpty) return true;
            Thread.Sleep(Math.Min(timeoutMs, 5));
            return !Done.IsEmpty;
        }

        public void Dispose() => Event.Dispose();
    }
}
