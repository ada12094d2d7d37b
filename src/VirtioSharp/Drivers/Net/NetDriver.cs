using System.Buffers.Binary;
using VirtioSharp.Dma;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Spec.Net;

namespace VirtioSharp.Drivers.Net;

/// <summary>
/// virtio-net driver (virtio 1.2 §5.1) on the generic driver core and the device's DMA ops: transmit with the
/// virtio-net header as given, receive into buffers it keeps posted (merged across buffers with MRG_RXBUF), the
/// control queue (RX modes, MAC table and address, VQ_PAIRS_SET) and the config (MAC, link status, MTU). It trusts
/// nothing the device writes: a used length shorter than the header, or num_buffers that names buffers the device never
/// used, drops the frame and counts it.
/// </summary>
public sealed class NetDriver : IDisposable
{
    private const ulong DriverFeatures =
        1UL << NetFeature.Mac | 1UL << NetFeature.Status | 1UL << NetFeature.Mtu | 1UL << NetFeature.MrgRxbuf |
        1UL << NetFeature.CtrlVq | 1UL << NetFeature.CtrlRx | 1UL << NetFeature.CtrlMacAddr | 1UL << NetFeature.Mq |
        1UL << NetFeature.Csum | 1UL << NetFeature.GuestCsum | 1UL << NetFeature.HostTso4 | 1UL << NetFeature.HostTso6 |
        1UL << NetFeature.HostEcn | 1UL << NetFeature.HostUfo |
        1UL << VirtioFeature.IndirectDesc | 1UL << VirtioFeature.EventIdx | 1UL << VirtioFeature.RingPacked;

    private readonly VirtioDriverDevice _dev;
    private readonly IDmaPlatform _platform;
    private readonly int _pairs, _ctrl, _hdrLen;
    private readonly uint _rxBufSize;
    private readonly ulong[] _rxPool;          // per pair: guest memory for the receive buffers
    private readonly ushort[] _rxCount;
    private readonly DmaMapping[]?[] _rxMaps;  // per pair: the receive buffers mapped once (premapped), or null
    private readonly List<(ulong Gpa, ulong Bytes)>[] _txInFlight;
    private readonly Queue<ReceivedFrame>[] _received;
    private bool _removed;

    /// <summary>A received frame: the device's header and the frame's bytes.</summary>
    public readonly record struct ReceivedFrame(VirtioNetHdr Header, byte[] Frame, int Buffers);

    private NetDriver(VirtioDriverDevice dev, IDmaPlatform platform, int pairs, uint rxBufSize)
    {
        _dev = dev;
        _platform = platform;
        _pairs = pairs;
        _ctrl = dev.Has(NetFeature.CtrlVq) ? 2 * pairs : -1;
        _hdrLen = VirtioNetHdr.SizeFor(dev.Features);
        _rxBufSize = rxBufSize;
        _rxPool = new ulong[pairs];
        _rxCount = new ushort[pairs];
        _rxMaps = new DmaMapping[]?[pairs];
        _txInFlight = new List<(ulong, ulong)>[pairs];
        _received = new Queue<ReceivedFrame>[pairs];
        for (int p = 0; p < pairs; p++) { _txInFlight[p] = []; _received[p] = new Queue<ReceivedFrame>(); }
    }

    /// <summary>The generic driver device underneath.</summary>
    public VirtioDriverDevice Device => _dev;
    /// <summary>Queue pairs set up (max_virtqueue_pairs with MQ, else 1).</summary>
    public int QueuePairs => _pairs;
    /// <summary>Bytes of the virtio-net header on this device (12, or 10 for a legacy one without MRG_RXBUF).</summary>
    public int HeaderLength => _hdrLen;
    /// <summary>
    /// True if pair <paramref name="pair"/>'s receive buffers were mapped once and are reposted premapped (Linux's
    /// premapped mode: no map or unmap per refill). False when the DMA ops could not hold them all at once (a small
    /// bounce pool or IOVA space): then each refill maps its buffer.
    /// </summary>
    public bool RxPremapped(int pair) => _rxMaps[pair] is not null;
    /// <summary>Frames dropped because the device's used lengths or num_buffers did not add up.</summary>
    public long RxErrors { get; private set; }

    /// <summary>The MAC address in config (NET_MAC).</summary>
    public byte[] Mac
    {
        get
        {
            var m = new byte[NetConfig.MacLength];
            _dev.ReadConfig(NetConfig.MacOffset, m);
            return m;
        }
    }

    /// <summary>Whether config status says the link is up (always up without NET_STATUS, §5.1.4.2).</summary>
    public bool LinkUp
    {
        get
        {
            if (!_dev.Has(NetFeature.Status)) return true;
            Span<byte> s = stackalloc byte[2];
            _dev.ReadConfig(NetConfig.StatusOffset, s);
            return (BinaryPrimitives.ReadUInt16LittleEndian(s) & (ushort)NetStatus.LinkUp) != 0;
        }
    }

    /// <summary>The MTU in config (NET_MTU), or 1500.</summary>
    public int Mtu
    {
        get
        {
            if (!_dev.Has(NetFeature.Mtu)) return 1500;
            Span<byte> s = stackalloc byte[2];
            _dev.ReadConfig(NetConfig.MtuOffset, s);
            return BinaryPrimitives.ReadUInt16LittleEndian(s);
        }
    }

    /// <summary>
    /// Probes a network device on <paramref name="transport"/>, sets up every queue pair it offers (up to
    /// <paramref name="maxPairs"/>) and posts a full ring of receive buffers on each; throws
    /// <see cref="VirtioProbeException"/> if it is not usable.
    /// </summary>
    /// <param name="transport">The device's transport.</param>
    /// <param name="env">The machine.</param>
    /// <param name="maxQueueSize">Upper bound on each queue's size.</param>
    /// <param name="maxPairs">Queue pairs to use at most (MQ).</param>
    /// <param name="refuseFeatures">Features not to accept even if offered (tests).</param>
    /// <param name="rxBufferSize">Bytes per receive buffer with MRG_RXBUF (0: 2048); without it each buffer holds a whole frame (header + 1518).</param>
    public static NetDriver Probe(IVirtioTransport transport, DriverEnvironment env, ushort maxQueueSize = 64, int maxPairs = 8, ulong refuseFeatures = 0,
        uint rxBufferSize = 0)
    {
        if (transport.DeviceId != DeviceId.Network) throw new VirtioProbeException($"device is {transport.DeviceId}, not a network device");
        int pairs = 1;
        var dev = VirtioDriverDevice.Probe(transport, env, DriverFeatures & ~refuseFeatures, 3, maxQueueSize, (t, features) =>
        {
            if (VirtioFeature.Has(features, NetFeature.Mq))
            {
                Span<byte> b = stackalloc byte[2];
                t.ReadConfig(NetConfig.MaxVirtqueuePairsOffset, b);
                int max = BinaryPrimitives.ReadUInt16LittleEndian(b);
                if (max < 1 || max > NetConfig.MaxQueuePairs) throw new VirtioProbeException($"max_virtqueue_pairs {max} is outside 1..{NetConfig.MaxQueuePairs}");
                pairs = Math.Min(max, maxPairs);
            }
            return 2 * pairs + (VirtioFeature.Has(features, NetFeature.CtrlVq) ? 1 : 0);
        });
        // MQ: the control queue sits after max_virtqueue_pairs pairs; a driver that uses fewer still sets them all up
        // here (it asks for at most maxPairs of them, which the config bounds).
        uint size = rxBufferSize != 0 && dev.Has(NetFeature.MrgRxbuf) ? rxBufferSize
            : dev.Has(NetFeature.MrgRxbuf) ? 2048u : (uint)(VirtioNetHdr.SizeFor(dev.Features) + NetConfig.EthHeaderLength + NetConfig.VlanHeaderLength + 1500);
        var drv = new NetDriver(dev, env.Platform, pairs, size);
        try
        {
            for (int p = 0; p < pairs; p++) drv.PostReceiveBuffers(p);
        }
        catch { drv.Dispose(); throw; }
        return drv;
    }

    private void PostReceiveBuffers(int pair)
    {
        var q = _dev.Queue(2 * pair);
        _rxCount[pair] = q.Size;
        _rxPool[pair] = _platform.Allocator.Allocate((ulong)q.Size * _rxBufSize);
        // Map the pool once, as the device's DMA ops allow; any refusal falls back to mapping per refill.
        var maps = new DmaMapping[q.Size];
        for (int i = 0; i < q.Size; i++)
        {
            if (_dev.Dma.Map(_rxPool[pair] + (ulong)i * _rxBufSize, _rxBufSize, DmaDirection.FromDevice, out maps[i]) == DmaStatus.Ok) continue;
            for (int j = i - 1; j >= 0; j--) _dev.Dma.Unmap(maps[j]);
            maps = null;
            break;
        }
        _rxMaps[pair] = maps;
        for (int i = 0; i < q.Size; i++) Post(pair, i);
        _dev.Kick(2 * pair);
    }

    private void Post(int pair, int index)
    {
        var q = _dev.Queue(2 * pair);
        var st = _rxMaps[pair] is { } maps
            ? q.AddPremapped([], new ReadOnlySpan<DmaMapping>(in maps[index]), index, out var dma)
            : q.Add([], [new BufferSegment(_rxPool[pair] + (ulong)index * _rxBufSize, _rxBufSize)], index, out dma);
        if (st != QueueStatus.Ok) throw new InvalidOperationException($"virtio-net: cannot post receive buffer {index}: {st} {dma}");
    }

    /// <summary>
    /// Queues <paramref name="frame"/> with <paramref name="header"/> on pair <paramref name="pair"/>'s transmit queue and
    /// notifies the device. False when the ring has no room (reap with <see cref="WaitForTransmits"/>).
    /// </summary>
    public bool Send(ReadOnlySpan<byte> frame, VirtioNetHdr header = default, int pair = 0)
    {
        ReapTransmits(pair);
        ulong bytes = (ulong)(_hdrLen + frame.Length);
        ulong gpa = _platform.Allocator.Allocate(bytes);
        Span<byte> hb = stackalloc byte[VirtioNetHdr.Size];
        (header with { NumBuffers = 0 }).Write(hb[.._hdrLen]);
        _platform.Cpu.Write(gpa, hb[.._hdrLen]);
        _platform.Cpu.Write(gpa + (ulong)_hdrLen, frame);
        var st = _dev.Queue(2 * pair + 1).Add([new BufferSegment(gpa, (uint)bytes)], [], gpa, out _);
        if (st != QueueStatus.Ok) { _platform.Allocator.Free(gpa, bytes); return false; }
        _txInFlight[pair].Add((gpa, bytes));
        _dev.Kick(2 * pair + 1);
        return true;
    }

    private void ReapTransmits(int pair)
    {
        var q = _dev.Queue(2 * pair + 1);
        while (q.GetUsed(out var token, out _) == QueueStatus.Ok)
        {
            ulong gpa = (ulong)token!;
            int i = _txInFlight[pair].FindIndex(t => t.Gpa == gpa);
            _platform.Allocator.Free(gpa, _txInFlight[pair][i].Bytes);
            _txInFlight[pair].RemoveAt(i);
        }
    }

    /// <summary>Waits until the device has used every frame sent on <paramref name="pair"/>; false if it stalls.</summary>
    public bool WaitForTransmits(int pair = 0) => _dev.WaitUntil(() => { ReapTransmits(pair); return _txInFlight[pair].Count == 0; });

    /// <summary>Takes a received frame if one is ready on <paramref name="pair"/> (polls the machine once).</summary>
    public bool TryReceive(out ReceivedFrame frame, int pair = 0)
    {
        _dev.PollOnce();
        Harvest(pair);
        return _received[pair].TryDequeue(out frame);
    }

    /// <summary>Waits for the next frame on <paramref name="pair"/>; throws <see cref="TimeoutException"/> if none comes.</summary>
    public ReceivedFrame Receive(int pair = 0)
    {
        if (!_dev.WaitUntil(() => { Harvest(pair); return _received[pair].Count > 0; }))
            throw new TimeoutException("virtio-net: no frame arrived");
        return _received[pair].Dequeue();
    }

    /// <summary>Frames received and not yet taken on <paramref name="pair"/>.</summary>
    public int Pending(int pair = 0) { Harvest(pair); return _received[pair].Count; }

    /// <summary>Turns used receive buffers into frames (validating what the device says) and reposts the buffers.</summary>
    private void Harvest(int pair)
    {
        var q = _dev.Queue(2 * pair);
        bool posted = false;
        while (q.GetUsed(out var token, out uint len) == QueueStatus.Ok)
        {
            int index = (int)token!;
            ulong gpa = _rxPool[pair] + (ulong)index * _rxBufSize;
            var pieces = new List<(ulong Gpa, uint Len, int Index)> { (gpa, len, index) };
            bool bad = len < (uint)_hdrLen;
            var hb = new byte[_hdrLen];
            if (!bad) _platform.Cpu.Read(gpa, hb);
            var hdr = VirtioNetHdr.Parse(hb);
            int buffers = 1;
            if (!bad && _dev.Has(NetFeature.MrgRxbuf))
            {
                // §5.1.6.4.2: num_buffers says how many used buffers make up the frame; all of them are used together.
                buffers = hdr.NumBuffers;
                if (buffers < 1 || buffers > q.Size) bad = true;
                for (int i = 1; !bad && i < buffers; i++)
                {
                    if (q.GetUsed(out var more, out uint l) != QueueStatus.Ok) { bad = true; break; }
                    int mi = (int)more!;
                    pieces.Add((_rxPool[pair] + (ulong)mi * _rxBufSize, l, mi));
                }
            }
            if (bad) RxErrors++;
            else
            {
                int total = pieces.Sum(p => (int)p.Len) - _hdrLen;
                var frame = new byte[total];
                int at = 0;
                for (int i = 0; i < pieces.Count; i++)
                {
                    int skip = i == 0 ? _hdrLen : 0;
                    int n = (int)pieces[i].Len - skip;
                    _platform.Cpu.Read(pieces[i].Gpa + (ulong)skip, frame.AsSpan(at, n));
                    at += n;
                }
                _received[pair].Enqueue(new ReceivedFrame(hdr with { NumBuffers = (ushort)buffers }, frame, buffers));
            }
            foreach (var p in pieces) Post(pair, p.Index);
            posted = true;
        }
        if (posted) _dev.Kick(2 * pair);
    }

    /// <summary>Sends one control command (class, command, data) and returns the device's ack (§5.1.6.5).</summary>
    public byte Control(byte cls, byte cmd, ReadOnlySpan<byte> data)
    {
        if (_ctrl < 0) throw new InvalidOperationException("the device has no control queue (CTRL_VQ not negotiated)");
        ulong bytes = (ulong)(2 + data.Length + 1);
        ulong gpa = _platform.Allocator.Allocate(bytes);
        try
        {
            _platform.Cpu.Write(gpa, [cls, cmd]);
            _platform.Cpu.Write(gpa + 2, data);
            _platform.Cpu.Write(gpa + 2 + (ulong)data.Length, [0xFF]);
            var q = _dev.Queue(_ctrl);
            var token = new object();
            var st = q.Add([new BufferSegment(gpa, (uint)(2 + data.Length))], [new BufferSegment(gpa + 2 + (ulong)data.Length, 1)], token, out var dma);
            if (st != QueueStatus.Ok) throw new InvalidOperationException($"virtio-net: cannot queue the control command: {st} {dma}");
            _dev.Kick(_ctrl);
            bool done = false;
            if (!_dev.WaitUntil(() => done || (done = q.GetUsed(out _, out _) == QueueStatus.Ok)))
                throw new TimeoutException("virtio-net: the device did not answer the control command");
            Span<byte> ack = stackalloc byte[1];
            _platform.Cpu.Read(gpa + 2 + (ulong)data.Length, ack);
            return ack[0];
        }
        finally { _platform.Allocator.Free(gpa, bytes); }
    }

    /// <summary>CTRL_RX_PROMISC; true if the device acked it.</summary>
    public bool SetPromiscuous(bool on) => Control(NetCtrlClass.Rx, NetCtrlRx.Promisc, [(byte)(on ? 1 : 0)]) == NetCtrlAck.Ok;
    /// <summary>CTRL_RX_ALLMULTI; true if the device acked it.</summary>
    public bool SetAllMulticast(bool on) => Control(NetCtrlClass.Rx, NetCtrlRx.AllMulti, [(byte)(on ? 1 : 0)]) == NetCtrlAck.Ok;

    /// <summary>CTRL_MAC_TABLE_SET with the given unicast and multicast addresses; true if acked.</summary>
    public bool SetMacTable(IReadOnlyList<byte[]> unicast, IReadOnlyList<byte[]> multicast)
    {
        var data = new byte[8 + 6 * (unicast.Count + multicast.Count)];
        int at = 0;
        foreach (var list in new[] { unicast, multicast })
        {
            BinaryPrimitives.WriteUInt32LittleEndian(data.AsSpan(at), (uint)list.Count);
            at += 4;
            foreach (var m in list) { m.CopyTo(data, at); at += 6; }
        }
        return Control(NetCtrlClass.Mac, NetCtrlMac.TableSet, data) == NetCtrlAck.Ok;
    }

    /// <summary>CTRL_MAC_ADDR_SET; true if acked.</summary>
    public bool SetMacAddress(ReadOnlySpan<byte> mac) => Control(NetCtrlClass.Mac, NetCtrlMac.AddrSet, mac) == NetCtrlAck.Ok;

    /// <summary>CTRL_MQ_VQ_PAIRS_SET; true if acked.</summary>
    public bool SetQueuePairs(int pairs)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, (ushort)pairs);
        return Control(NetCtrlClass.Mq, NetCtrlMq.VqPairsSet, b) == NetCtrlAck.Ok;
    }

    /// <summary>Removes the device (reset, every buffer unmapped) and frees the driver's guest memory.</summary>
    public void Dispose()
    {
        if (_removed) return;
        _removed = true;
        _dev.Remove();
        for (int p = 0; p < _pairs; p++)
        {
            // Removal detached every buffer still posted; the premapped pool is ours to unmap.
            if (_rxMaps[p] is { } maps)
                foreach (var m in maps) _dev.Dma.Unmap(m);
            _rxMaps[p] = null;
            if (_rxPool[p] != 0) _platform.Allocator.Free(_rxPool[p], (ulong)_rxCount[p] * _rxBufSize);
            foreach (var (gpa, bytes) in _txInFlight[p]) _platform.Allocator.Free(gpa, bytes);
            _txInFlight[p].Clear();
        }
    }
}
