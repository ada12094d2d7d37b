using System.Buffers.Binary;
using System.Runtime.InteropServices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Devices.Net;
using VirtioSharp.Spec.Net;

namespace VirtioSharp.Net.Loopback;

/// <summary>
/// A <see cref="INetPort"/> that sends every transmitted frame back to the receive queue: a packet reflector for
/// benchmarks and for interop tests against packet generators (DPDK testpmd), the counterpart of testpmd's io
/// forwarding. Frames wait in one preallocated byte ring (each frame copied once in and once out, as a vhost PMD copies
/// into and out of an mbuf); nothing is allocated per frame. A full ring drops the frame and counts it, as a NIC would.
/// </summary>
/// <remarks>
/// Several transmit queues may call <see cref="Transmit"/> at once (they take turns on a spin lock that is uncontended with
/// one pair per port); <see cref="Receive"/> runs on the one receive queue's owner thread. The receive queue is woken
/// only when it found the ring empty, so a busy loop costs no eventfd write per frame.
/// </remarks>
public sealed class LoopbackNetPort : INetPort
{
    // A record: le32 frame length (or WrapMarker), le32 reserved, the 12-byte virtio-net header, the frame; 64-byte aligned.
    private const int RecordHeader = 4 + 4 + VirtioNetHdr.Size + 4;
    private const int Align = 64;
    private const int WrapMarker = -1;
    private readonly byte[] _ring;
    private readonly long _mask;
    private readonly int _maxFrame;
    private long _head;            // consumer-owned: the next record to read
    private long _tail;            // producers (under _producer): where the next record goes
    private int _producer;         // 0 free, 1 held
    private int _idle = 1;         // the consumer found the ring empty and waits for a wake
    private volatile Action? _wake;
    private long _looped;          // written under _producer
    private long _delivered;       // written by the consumer only
    private long _dropped, _oversize, _tooBig;

    /// <summary>
    /// A reflector with a ring of <paramref name="ringBytes"/> (a power of two, at least 4 records of
    /// <paramref name="maxFrame"/>) for frames of at most <paramref name="maxFrame"/> bytes (MTU + link headers).
    /// </summary>
    public LoopbackNetPort(int ringBytes = 4 << 20, int maxFrame = NetConfig.MaxFrameLength)
    {
        if (maxFrame < NetConfig.EthHeaderLength || maxFrame > NetConfig.MaxFrameLength)
            throw new ArgumentOutOfRangeException(nameof(maxFrame), $"maxFrame {maxFrame} must be {NetConfig.EthHeaderLength}..{NetConfig.MaxFrameLength}");
        if (ringBytes <= 0 || (ringBytes & (ringBytes - 1)) != 0 || ringBytes < 4 * RecordSize(maxFrame))
            throw new ArgumentOutOfRangeException(nameof(ringBytes), $"ringBytes {ringBytes} must be a power of two holding at least 4 frames of {maxFrame} bytes");
        _ring = GC.AllocateUninitializedArray<byte>(ringBytes, pinned: true);
        _mask = ringBytes - 1;
        _maxFrame = maxFrame;
    }

    /// <summary>
    /// A reflector sized for a device with <paramref name="mtu"/> (0: none, frames up to the largest virtio-net frame)
    /// and receive queues of <paramref name="queueSize"/> buffers: frames up to MTU + Ethernet and VLAN headers, a ring
    /// holding a queue's worth of them (a power of two, at least 4 frames, at most 4 MiB).
    /// </summary>
    public static LoopbackNetPort ForDevice(int mtu, int queueSize)
    {
        if (mtu != 0 && (mtu < NetConfig.MinMtu || mtu > NetConfig.MaxFrameLength - NetConfig.EthHeaderLength - NetConfig.VlanHeaderLength))
            throw new ArgumentOutOfRangeException(nameof(mtu), $"mtu {mtu} must be 0 or {NetConfig.MinMtu}..{NetConfig.MaxFrameLength - NetConfig.EthHeaderLength - NetConfig.VlanHeaderLength}");
        ArgumentOutOfRangeException.ThrowIfLessThan(queueSize, 1);
        int maxFrame = mtu == 0 ? NetConfig.MaxFrameLength : mtu + NetConfig.EthHeaderLength + NetConfig.VlanHeaderLength;
        long want = Math.Max(4L, queueSize) * RecordSize(maxFrame);
        int ring = (int)Math.Max(Math.Min(System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)want), 4UL << 20),
            System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)(4 * RecordSize(maxFrame))));
        return new LoopbackNetPort(ring, maxFrame);
    }

    private static int RecordSize(int frame) => (RecordHeader + frame + Align - 1) & ~(Align - 1);

    /// <summary>Bytes of the frame ring.</summary>
    public int RingBytes => _ring.Length;
    /// <summary>The largest frame taken; larger ones are dropped (<see cref="Oversize"/>).</summary>
    public int MaxFrame => _maxFrame;
    /// <summary>Frames taken from the transmit queues and queued for the receive queue.</summary>
    public long Looped => Volatile.Read(ref _looped);
    /// <summary>Frames written into the driver's receive buffers.</summary>
    public long Delivered => Volatile.Read(ref _delivered);
    /// <summary>Frames queued and not delivered yet (the receive queue had no buffers for them, or has not run since).</summary>
    public long Waiting => Looped - Delivered - TooBig;
    /// <summary>Frames dropped because the ring was full (the receive side did not keep up or had no buffers).</summary>
    public long Dropped => Interlocked.Read(ref _dropped);
    /// <summary>Frames dropped because they were larger than the port's largest frame.</summary>
    public long Oversize => Interlocked.Read(ref _oversize);
    /// <summary>Frames dropped on receive because the buffers offered could not hold them.</summary>
    public long TooBig => Interlocked.Read(ref _tooBig);

    /// <summary>
    /// No offloads: a frame goes back exactly as sent, so a partial checksum or a segmentation request would reach a
    /// receive queue that may not have negotiated it.
    /// </summary>
    public ulong OffloadFeatures => 0;
    /// <inheritdoc/>
    public SafeHandle? ReadableHandle => null;
    /// <inheritdoc/>
    public void SetReceiveWakeup(Action? wake) => _wake = wake;
    /// <inheritdoc/>
    public void SetOffloads(ulong features) { }

    /// <inheritdoc/>
    public unsafe bool Transmit(in VirtioNetHdr header, ReadOnlySpan<IoVec> frame)
    {
        long len = 0;
        foreach (var v in frame) len += (long)v.Length;
        if (len > _maxFrame) { Interlocked.Increment(ref _oversize); return false; }
        int rec = RecordSize((int)len);
        long cap = _ring.Length;
        while (Interlocked.CompareExchange(ref _producer, 1, 0) != 0) Thread.SpinWait(1);
        try
        {
            long tail = _tail;
            int pos = (int)(tail & _mask);
            long contiguous = cap - pos;
            long need = contiguous < rec ? contiguous + rec : rec;
            if (tail + need - Volatile.Read(ref _head) > cap) { Interlocked.Increment(ref _dropped); return false; }
            if (contiguous < rec)
            {
                // Records never straddle the end: mark the rest of the ring skipped and start over at 0.
                BinaryPrimitives.WriteInt32LittleEndian(_ring.AsSpan(pos), WrapMarker);
                pos = 0;
            }
            var r = _ring.AsSpan(pos, rec);
            BinaryPrimitives.WriteInt32LittleEndian(r, (int)len);
            header.Write(r.Slice(8, VirtioNetHdr.Size));
            int at = RecordHeader;
            foreach (var v in frame)
            {
                new ReadOnlySpan<byte>((void*)v.Base, (int)v.Length).CopyTo(r[at..]);
                at += (int)v.Length;
            }
            // Release: the consumer that sees the new tail sees the record.
            Volatile.Write(ref _tail, tail + need);
            Volatile.Write(ref _looped, _looped + 1);
        }
        finally { Volatile.Write(ref _producer, 0); }
        // Dekker with the consumer's idle flag: either it sees the new tail, or this sees it idle and wakes it.
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref _idle) != 0 && Interlocked.Exchange(ref _idle, 0) != 0) _wake?.Invoke();
        return true;
    }

    /// <inheritdoc/>
    public unsafe int Receive(ReadOnlySpan<IoVec> destination, out VirtioNetHdr header)
    {
        header = default;
        long head = _head;
        long tail = Volatile.Read(ref _tail);
        if (head == tail)
        {
            Volatile.Write(ref _idle, 1);
            Interlocked.MemoryBarrier();
            tail = Volatile.Read(ref _tail);
            if (head == tail) return 0;
            Interlocked.Exchange(ref _idle, 0);
        }
        int pos = (int)(head & _mask);
        int len = BinaryPrimitives.ReadInt32LittleEndian(_ring.AsSpan(pos));
        if (len == WrapMarker)
        {
            head += _ring.Length - pos;
            pos = 0;
            len = BinaryPrimitives.ReadInt32LittleEndian(_ring);
        }
        var r = _ring.AsSpan(pos, RecordSize(len));
        long room = 0;
        foreach (var v in destination) room += (long)v.Length;
        if (len > room)
        {
            Volatile.Write(ref _head, head + r.Length);
            Interlocked.Increment(ref _tooBig);
            return -1;
        }
        header = VirtioNetHdr.Parse(r.Slice(8, VirtioNetHdr.Size)) with { NumBuffers = 0 };
        int at = 0;
        foreach (var v in destination)
        {
            if (at == len) break;
            int n = (int)Math.Min((long)v.Length, len - at);
            r.Slice(RecordHeader + at, n).CopyTo(new Span<byte>((void*)v.Base, n));
            at += n;
        }
        // Release: a producer that sees the new head may reuse the record's bytes.
        Volatile.Write(ref _head, head + r.Length);
        Volatile.Write(ref _delivered, _delivered + 1);
        return len;
    }
}
