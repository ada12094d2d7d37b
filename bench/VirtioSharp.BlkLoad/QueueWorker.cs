using System.Buffers.Binary;
using System.Diagnostics;
using VirtioSharp.Drivers;
using VirtioSharp.Interop;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Devices.Block;

namespace VirtioSharp.BlkLoad;

/// <summary>
/// One driver thread on one queue: keeps <see cref="LoadOptions.Depth"/> requests in flight on the raw
/// <see cref="DriverQueue"/>, busy-polls the used ring and resubmits each completed slot at once. Nothing is allocated
/// per request: slots, buffers and segment arrays exist before the first submission. After
/// <see cref="LoadOptions.SpinMicroseconds"/> without a completion it sleeps on the queue's call eventfd, so on a small
/// machine an idle driver thread gives its core back to the back-end.
/// </summary>
internal sealed class QueueWorker
{
    private readonly VirtioDriverDevice _dev;
    private readonly int _queue;
    private readonly DriverQueue _ring;
    private readonly GuestRegion _ram;
    private readonly EventFd _call;
    private readonly SafeFd[] _callFds;
    private readonly RunControl _control;
    private readonly LoadOptions _o;
    private readonly RequestSlot[] _slots;
    private readonly ulong _blocks;          // bs-sized blocks in this queue's part of the disk (sequential) or all of it
    private readonly ulong _firstBlock;
    private readonly uint _type;
    private ulong _rng;
    private ulong _seq;

    public LatencyHistogram Latency { get; } = new();
    public long Completed { get; private set; }
    public long Errors { get; private set; }
    public string? Failure { get; private set; }

    public QueueWorker(VirtioDriverDevice dev, int queue, GuestRegion ram, EventFd call, RunControl control, LoadOptions o, ulong capacityBytes, GuestAllocator alloc)
    {
        _dev = dev;
        _queue = queue;
        _ring = dev.Queue(queue);
        _ram = ram;
        _call = call;
        _callFds = [call.Handle];
        _control = control;
        _o = o;
        _type = o.Pattern == Pattern.RandWrite ? BlkRequestType.Out : BlkRequestType.In;
        ulong all = capacityBytes / (ulong)o.BlockBytes;
        if (o.Pattern == Pattern.SeqRead)
        {
            // Each queue streams through its own part of the disk.
            _blocks = Math.Max(1, all / (ulong)o.Queues);
            _firstBlock = _blocks * (ulong)queue;
            // Start somewhere new each run, so a run never reads exactly what the previous run (the other back-end)
            // just pulled into a cache below us (the host's, for a virtual disk).
            _seq = (ulong)Random.Shared.NextInt64((long)_blocks);
        }
        else _blocks = all;
        _rng = 0x9E3779B97F4A7C15UL * (ulong)(queue + 1);
        _slots = new RequestSlot[o.Depth];
        ulong headers = alloc.Allocate((ulong)(32 * o.Depth));
        for (int i = 0; i < o.Depth; i++)
        {
            // Page-aligned data buffers: O_DIRECT back-ends can hand them to the disk as they are.
            ulong data = alloc.Allocate((ulong)o.BlockBytes);
            ram.AsSpan(data, o.BlockBytes).Fill((byte)(0x5A + i));
            _slots[i] = new RequestSlot { HeaderGpa = headers + (ulong)(32 * i), DataGpa = data };
        }
    }

    public void Run()
    {
        try { Loop(); }
        catch (Exception e) { Failure = $"queue {_queue}: {e.Message}"; }
    }

    private void Loop()
    {
        long now = Stopwatch.GetTimestamp();
        foreach (var s in _slots) Submit(s, now);
        _dev.Kick(_queue);
        long spinTicks = (long)(_o.SpinMicroseconds * Stopwatch.Frequency / 1e6);
        long idleSince = 0, stopAt = 0;
        while (true)
        {
            int phase = _control.Phase;
            bool any = false;
            while (_ring.GetUsed(out var token, out _) == QueueStatus.Ok)
            {
                any = true;
                var s = (RequestSlot)token!;
                now = Stopwatch.GetTimestamp();
                if (_ram.AsSpan(s.HeaderGpa + BlkSpec.HeaderSize, 1)[0] != 0) Errors++;
                if (phase == RunControl.Measure)
                {
                    Latency.Record(now - s.Start);
                    Completed++;
                }
                if (phase != RunControl.Stop) Submit(s, now);
            }
            if (_ring.IsBroken) throw new InvalidOperationException($"the back-end broke the queue: {_ring.ErrorDetail}");
            if (any)
            {
                if (phase != RunControl.Stop) _dev.Kick(_queue);
                idleSince = 0;
                continue;
            }
            if (phase == RunControl.Stop)
            {
                if (_ring.Outstanding == 0) return;
                now = Stopwatch.GetTimestamp();
                if (stopAt == 0) stopAt = now;
                else if (now - stopAt > 5 * Stopwatch.Frequency) throw new TimeoutException($"{_ring.Outstanding} requests still in flight 5 s after the end");
            }
            now = Stopwatch.GetTimestamp();
            if (idleSince == 0) idleSince = now;
            else if (now - idleSince > spinTicks)
            {
                // Sleep until the back-end interrupts (the driver never suppresses them, as a guest without polling).
                _call.DrainIfReadable();
                if (!_ring.HasUsed) EventFd.WaitAny(_callFds, 1);
                idleSince = 0;
            }
        }
    }

    private void Submit(RequestSlot s, long now)
    {
        ulong block = _o.Pattern == Pattern.SeqRead ? _firstBlock + _seq++ % _blocks : Next() % _blocks;
        var h = _ram.AsSpan(s.HeaderGpa, BlkSpec.HeaderSize + 1);
        BinaryPrimitives.WriteUInt32LittleEndian(h, _type);
        BinaryPrimitives.WriteUInt32LittleEndian(h[4..], 0);
        BinaryPrimitives.WriteUInt64LittleEndian(h[8..], block * (ulong)_o.BlockBytes >> BlkSpec.SectorShift);
        h[BlkSpec.HeaderSize] = 0xFF;   // the back-end must overwrite it
        var header = new BufferSegment(s.HeaderGpa, BlkSpec.HeaderSize);
        var data = new BufferSegment(s.DataGpa, (uint)_o.BlockBytes);
        var status = new BufferSegment(s.HeaderGpa + BlkSpec.HeaderSize, 1);
        Span<BufferSegment> readable = stackalloc BufferSegment[2];
        Span<BufferSegment> writable = stackalloc BufferSegment[2];
        readable[0] = header;
        QueueStatus st;
        s.Start = now;
        if (_type == BlkRequestType.Out)
        {
            readable[1] = data;
            writable[0] = status;
            st = _ring.Add(readable, writable[..1], s, out _);
        }
        else
        {
            writable[0] = data;
            writable[1] = status;
            st = _ring.Add(readable[..1], writable, s, out _);
        }
        if (st != QueueStatus.Ok) throw new InvalidOperationException($"could not add a request: {st}");
    }

    private ulong Next()
    {
        // xorshift64*: cheap, and every queue has its own sequence.
        _rng ^= _rng >> 12;
        _rng ^= _rng << 25;
        _rng ^= _rng >> 27;
        return _rng * 0x2545F4914F6CDD1DUL;
    }
}
