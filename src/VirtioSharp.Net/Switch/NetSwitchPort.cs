using System.Runtime.InteropServices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Devices.Net;
using VirtioSharp.Spec.Net;

namespace VirtioSharp.Net.Switch;

/// <summary>
/// One port of a <see cref="NetSwitch"/>, the <see cref="INetPort"/> of one guest's <see cref="NetDevice{TMem}"/>. A
/// frame the guest transmits is copied once into a switch buffer and forwarded; frames for this guest wait in a
/// bounded queue (<see cref="NetSwitchOptions.QueueLength"/>) until its receive queue takes them, and are dropped and
/// counted when it is full, so a guest that posts no receive buffers stalls nobody else.
/// </summary>
/// <remarks>No offloads: frames carry no partial checksum or segmentation, so any guest can take any other's frames.</remarks>
public sealed class NetSwitchPort : INetPort
{
    private readonly NetSwitch _switch;
    private readonly FramePool _pool;
    private readonly int[] _ring;       // slots waiting for this guest, oldest at _head
    private readonly Lock _lock = new();
    private int _head, _count;
    private Action? _wake;              // under _lock; null: no guest attached
    private long _txPackets, _txBytes, _txDropped, _rxPackets, _rxBytes, _rxDropped, _floods, _filtered;

    internal NetSwitchPort(NetSwitch sw, FramePool pool, int index, int queueLength)
    {
        _switch = sw;
        _pool = pool;
        Index = index;
        _ring = new int[queueLength];
    }

    /// <summary>The port's number on its switch (0-based).</summary>
    public int Index { get; }
    /// <summary>The switch it belongs to.</summary>
    public NetSwitch Switch => _switch;
    /// <summary>Frames waiting for this port's guest.</summary>
    public int Waiting { get { lock (_lock) return _count; } }

    /// <summary>The counters now (any thread).</summary>
    public NetSwitchPortStats Stats => new(
        Interlocked.Read(ref _txPackets), Interlocked.Read(ref _txBytes), Interlocked.Read(ref _txDropped),
        Interlocked.Read(ref _rxPackets), Interlocked.Read(ref _rxBytes), Interlocked.Read(ref _rxDropped),
        Interlocked.Read(ref _floods), Interlocked.Read(ref _filtered));

    /// <summary>None: the switch carries plain frames.</summary>
    public ulong OffloadFeatures => 0;
    /// <inheritdoc/>
    public SafeHandle? ReadableHandle => null;
    /// <inheritdoc/>
    public void SetOffloads(ulong features) { }

    /// <summary>
    /// The guest's device was activated (<paramref name="wake"/> set) or reset (null): while no guest is attached frames
    /// for it are dropped, and the ones still waiting when it goes are dropped too (a new guest must not get them).
    /// </summary>
    public void SetReceiveWakeup(Action? wake)
    {
        lock (_lock)
        {
            _wake = wake;
            if (wake is not null) return;
            while (_count > 0)
            {
                _pool.Release(_ring[_head]);
                _head = (_head + 1) % _ring.Length;
                _count--;
                Interlocked.Increment(ref _rxDropped);
            }
        }
    }

    /// <inheritdoc/>
    public bool Transmit(in VirtioNetHdr header, ReadOnlySpan<IoVec> frame) => _switch.Forward(this, frame);

    /// <inheritdoc/>
    public unsafe int Receive(ReadOnlySpan<IoVec> destination, out VirtioNetHdr header)
    {
        header = default;
        int slot;
        lock (_lock)
        {
            if (_count == 0) return 0;
            slot = _ring[_head];
            _head = (_head + 1) % _ring.Length;
            _count--;
        }
        int length = _pool.Length(slot);
        long room = 0;
        foreach (var v in destination) room += (long)v.Length;
        if (length > room)
        {
            _pool.Release(slot);
            Interlocked.Increment(ref _rxDropped);
            return -1;
        }
        var src = _pool.Buffer(slot)[..length];
        int at = 0;
        foreach (var v in destination)
        {
            if (at == length) break;
            int n = (int)Math.Min((long)v.Length, length - at);
            src.Slice(at, n).CopyTo(new Span<byte>((void*)v.Base, n));
            at += n;
        }
        _pool.Release(slot);
        Interlocked.Increment(ref _rxPackets);
        Interlocked.Add(ref _rxBytes, length);
        return length;
    }

    /// <summary>Any thread: queues <paramref name="slot"/> (taking a reference) for this guest; false when dropped.</summary>
    internal bool Enqueue(int slot)
    {
        Action? wake;
        lock (_lock)
        {
            if (_wake is null || _count == _ring.Length)
            {
                Interlocked.Increment(ref _rxDropped);
                return false;
            }
            _pool.AddRef(slot);
            _ring[(_head + _count) % _ring.Length] = slot;
            // The receive queue drains until the port is empty, so only a frame into an empty queue needs a wake.
            wake = ++_count == 1 ? _wake : null;
        }
        wake?.Invoke();
        return true;
    }

    internal void CountTx(int bytes)
    {
        Interlocked.Increment(ref _txPackets);
        Interlocked.Add(ref _txBytes, bytes);
    }

    internal void CountTxDropped() => Interlocked.Increment(ref _txDropped);
    internal void CountFlood() => Interlocked.Increment(ref _floods);
    internal void CountFiltered() => Interlocked.Increment(ref _filtered);
}
