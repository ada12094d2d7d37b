using System.Buffers.Binary;
using VirtioSharp.Devices.Block;
using VirtioSharp.Spec.Net;

namespace VirtioSharp.Net.Switch;

/// <summary>
/// A learning L2 switch between guests, with no kernel networking: each <see cref="NetSwitchPort"/> is the packet port of
/// one virtio-net device (one vhost-user socket). A transmitted frame is copied once into a pooled buffer; its source
/// address is learned for the ingress port; it goes to the port its destination was learned on, or to every other
/// port (flooding) when the destination is broadcast, multicast or unknown, and never back to its ingress port.
/// </summary>
/// <remarks>
/// Bounded everywhere: the MAC table has a fixed number of slots (<see cref="NetSwitchOptions.MacTableSize"/>, oldest
/// entry replaced, entries age out), each port queues at most <see cref="NetSwitchOptions.QueueLength"/> frames, and
/// the buffer pool has one buffer per queue entry, so a flooding or stalled guest cannot grow memory or starve the
/// others. No allocation per frame. The frame is read only from the switch's own copy (the guest may change its buffer
/// while it is being read).
/// </remarks>
public sealed class NetSwitch
{
    private readonly NetSwitchPort[] _ports;
    private readonly FramePool _pool;
    private readonly MacTable _table;
    private readonly Lock _tableLock = new();
    private readonly TimeProvider _time;

    /// <summary>A switch with <paramref name="ports"/> ports (2 to 64).</summary>
    public NetSwitch(int ports, NetSwitchOptions? options = null)
    {
        var o = options ?? new NetSwitchOptions();
        if (ports is < 2 or > 64) throw new ArgumentOutOfRangeException(nameof(ports), $"{ports} ports: a switch here has 2 to 64");
        if (o.Mtu is < NetConfig.MinMtu or > 65535) throw new ArgumentOutOfRangeException(nameof(options), $"MTU {o.Mtu} is outside {NetConfig.MinMtu}..65535");
        if (o.QueueLength is < 1 or > 32768) throw new ArgumentOutOfRangeException(nameof(options), $"queue length {o.QueueLength}: 1 to 32768 frames");
        if (o.AgeingTime <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(options), "the ageing time must be positive");
        ArgumentNullException.ThrowIfNull(o.Time, nameof(options));
        Options = o;
        MaxFrameLength = o.Mtu + NetConfig.EthHeaderLength + NetConfig.VlanHeaderLength;
        _time = o.Time;
        _table = new MacTable(o.MacTableSize, (long)(o.AgeingTime.TotalSeconds * o.Time.TimestampFrequency));
        // Nearly every buffer in use waits in a port queue (a flood takes one); only the few being copied at that moment
        // are in none, so the pool runs short by at most those (the frame is then counted as tx-dropped).
        _pool = new FramePool(ports * o.QueueLength, MaxFrameLength);
        _ports = new NetSwitchPort[ports];
        for (int i = 0; i < ports; i++) _ports[i] = new NetSwitchPort(this, _pool, i, o.QueueLength);
    }

    /// <summary>The options it was built with.</summary>
    public NetSwitchOptions Options { get; }
    /// <summary>The ports, by index.</summary>
    public IReadOnlyList<NetSwitchPort> Ports => _ports;
    /// <summary>Longest frame carried: MTU + Ethernet and VLAN headers.</summary>
    public int MaxFrameLength { get; }
    /// <summary>MAC table slots.</summary>
    public int MacTableCapacity => _table.Capacity;
    /// <summary>Frame buffers not in use.</summary>
    public int FreeBuffers => _pool.Free;
    /// <summary>Frame buffers in all.</summary>
    public int Buffers => _pool.Slots;

    /// <summary>Addresses learned and not aged out.</summary>
    public int MacEntries { get { long now = _time.GetTimestamp(); lock (_tableLock) return _table.LiveCount(now); } }
    /// <summary>Learned addresses that replaced a live one because the table was full where they hashed.</summary>
    public long MacEvictions { get { lock (_tableLock) return _table.Evictions; } }

    /// <summary>The port <paramref name="mac"/> (6 bytes) was learned on, or -1 (unknown or aged out).</summary>
    public int PortOf(ReadOnlySpan<byte> mac)
    {
        if (mac.Length != NetConfig.MacLength) throw new ArgumentException("a MAC address is 6 bytes", nameof(mac));
        long now = _time.GetTimestamp();
        lock (_tableLock) return _table.TryLookup(Key(mac), now, out int p) ? p : -1;
    }

    private static ulong Key(ReadOnlySpan<byte> mac) => (ulong)BinaryPrimitives.ReadUInt32BigEndian(mac) << 16 | BinaryPrimitives.ReadUInt16BigEndian(mac[4..]);

    /// <summary>From <paramref name="from"/>'s transmit path: copies the frame once and forwards it. False: dropped at once.</summary>
    internal unsafe bool Forward(NetSwitchPort from, ReadOnlySpan<IoVec> frame)
    {
        long length = 0;
        foreach (var v in frame) length += (long)v.Length;
        if (length < NetConfig.EthHeaderLength || length > MaxFrameLength || !_pool.TryRent(out int slot))
        {
            from.CountTxDropped();
            return false;
        }
        var buf = _pool.Buffer(slot);
        int at = 0;
        foreach (var v in frame)
        {
            new ReadOnlySpan<byte>((void*)v.Base, (int)v.Length).CopyTo(buf[at..]);
            at += (int)v.Length;
        }
        _pool.Length(slot) = at;
        from.CountTx(at);
        // Addresses come from the copy: what is forwarded is what was looked at.
        ReadOnlySpan<byte> dst = buf[..NetConfig.MacLength], src = buf.Slice(NetConfig.MacLength, NetConfig.MacLength);
        ulong srcKey = Key(src);
        long now = _time.GetTimestamp();
        int to = -1;
        bool flood;
        lock (_tableLock)
        {
            // Only unicast sources are learned: a group address never sends (IEEE 802.1D 7.8).
            if ((src[0] & 1) == 0 && srcKey != 0) _table.Learn(srcKey, from.Index, now);
            flood = (dst[0] & 1) != 0 || !_table.TryLookup(Key(dst), now, out to);
        }
        if (flood)
        {
            from.CountFlood();
            foreach (var p in _ports)
                if (p != from) p.Enqueue(slot);
        }
        else if (to == from.Index) from.CountFiltered();
        else _ports[to].Enqueue(slot);
        _pool.Release(slot);
        return true;
    }
}
