using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Spec.Net;

namespace VirtioSharp.Devices.Net;

/// <summary>
/// virtio-net device model (virtio 1.2 §5.1): receive/transmit queue pairs over <see cref="INetPort"/>s, the
/// virtio_net_hdr offloads carried through as metadata, MRG_RXBUF, MAC, STATUS (link), MTU, and the control queue
/// (RX modes, MAC table, MAC address, VQ_PAIRS_SET). Frames move once, between the port and guest memory (host vectors
/// from <see cref="IDeviceMemory.MapForIo"/>; a device buffer where the address space only copies). Every header and
/// length from the driver is checked: a bad packet is dropped and counted, never a broken queue.
/// </summary>
/// <remarks>
/// Queues: receiveq k = 2k, transmitq k = 2k+1, controlq = 2 × max_virtqueue_pairs with MQ, else 2 (§5.1.2). With one
/// port every pair transmits into it and receiveq 0 receives from it; with one port per pair each pair has its own.
/// Receive buffers are popped ahead of frames (a port cannot say how long its next frame is without reading it) and kept
/// until a frame fills them; a queue that stops returns the ones it holds empty, so the driver gets them back.
/// </remarks>
public sealed class NetDevice<TMem> : IVirtioDevice<TMem>, IRarpAnnouncer where TMem : struct, IDeviceMemory
{
    private static readonly byte[] DefaultMac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    private const int MaxMacTableEntries = 64;
    private const int MaxCtrlBytes = 2 + 2 * 4 + 2 * MaxMacTableEntries * NetConfig.MacLength;
    private readonly NetDeviceOptions _o;
    private readonly INetPort[] _ports;
    private readonly NetQueueState<TMem>[] _queues;
    private readonly QueueService<TMem>[] _services;
    private readonly byte[] _ctrlScratch = new byte[MaxCtrlBytes];   // control queue's owner thread
    private byte[] _mac;
    private volatile DeviceContext<TMem>? _ctx;
    private volatile NetRxFilter _filter;
    private volatile bool _linkUp;
    private volatile int _activePairs = 1;
    // Fixed at activation from the negotiated features (read by every owner thread afterwards).
    private int _hdrLen = VirtioNetHdr.Size, _ctrlQueue = -1, _rxMaxFrame, _rxMinRoom, _txMaxFrame;
    private bool _mergeable, _filtering;
    private ulong _features;
    private long _rarpSent, _rarpDropped;   // any thread (Interlocked)

    /// <summary>
    /// A network device over <paramref name="ports"/>: one port for every pair, or one per queue pair
    /// (<see cref="NetDeviceOptions.QueuePairs"/> of them).
    /// </summary>
    public NetDevice(IReadOnlyList<INetPort> ports, NetDeviceOptions? options = null)
    {
        _o = options ?? new NetDeviceOptions();
        ArgumentNullException.ThrowIfNull(ports);
        if (_o.QueuePairs < 1 || _o.QueuePairs > 64)
            throw new ArgumentOutOfRangeException(nameof(options), $"queue pairs {_o.QueuePairs}: a virtio-net device here has 1 to 64");
        if (ports.Count != 1 && ports.Count != _o.QueuePairs)
            throw new ArgumentException($"{ports.Count} ports for {_o.QueuePairs} queue pairs: give one port, or one per pair", nameof(ports));
        if (_o.Mtu != 0 && (_o.Mtu < NetConfig.MinMtu || _o.Mtu > 65535))
            throw new ArgumentOutOfRangeException(nameof(options), $"MTU {_o.Mtu} is outside {NetConfig.MinMtu}..65535");
        if (_o.Mac is { } m && (m.Length != NetConfig.MacLength || (m[0] & 1) != 0))
            throw new ArgumentException("the MAC address must be 6 bytes and unicast (the first byte even)", nameof(options));
        if (_o.LegacyOnly && _o.OfferPacked) throw new ArgumentException("a legacy-only device cannot offer RING_PACKED", nameof(options));
        _ports = [.. ports];
        _mac = (byte[])(_o.Mac ?? DefaultMac).Clone();
        _filter = NetRxFilter.Initial(_mac);
        _linkUp = _o.LinkUp;
        _queues = new NetQueueState<TMem>[QueueCount];
        _services = new QueueService<TMem>[QueueCount];
        for (int i = 0; i < QueueCount; i++)
        {
            _queues[i] = new NetQueueState<TMem>(_o.QueueSize);
            _services[i] = new QueueService<TMem>(_o.QueueSize);
            int q = i;
            _queues[i].OnReadable = () => Receive(q);
        }
        ulong f = Bit(NetFeature.Mac) | Bit(NetFeature.Status) | Bit(VirtioFeature.EventIdx) | Bit(VirtioFeature.IndirectDesc);
        if (_o.OfferMergeableRxBuffers) f |= Bit(NetFeature.MrgRxbuf);
        if (_o.Mtu != 0) f |= Bit(NetFeature.Mtu);
        if (_o.QueuePairs > 1) f |= Bit(NetFeature.Mq);
        if (_o.ControlQueue) f |= Bit(NetFeature.CtrlVq) | Bit(NetFeature.CtrlRx) | Bit(NetFeature.CtrlMacAddr);
        if (_o.OfferOffloads)
        {
            ulong common = ulong.MaxValue;
            foreach (var p in _ports) common &= p.OffloadFeatures;
            f |= common & MemoryNetPort.AllOffloads;
        }
        if (!_o.LegacyOnly)
        {
            f |= Bit(VirtioFeature.Version1);
            if (_o.OfferAccessPlatform) f |= Bit(VirtioFeature.AccessPlatform);
            if (_o.OfferPacked) f |= Bit(VirtioFeature.RingPacked);
        }
        DeviceFeatures = f;
    }

    private static ulong Bit(int b) => 1UL << b;

    /// <inheritdoc/>
    public DeviceId DeviceId => DeviceId.Network;
    /// <inheritdoc/>
    public ulong DeviceFeatures { get; }
    /// <inheritdoc/>
    public int QueueCount => 2 * _o.QueuePairs + (_o.ControlQueue ? 1 : 0);
    /// <inheritdoc/>
    public ushort MaxQueueSize => _o.QueueSize;
    /// <inheritdoc/>
    public int ConfigSize => NetConfig.Size;
    /// <summary>The options the device was made with.</summary>
    public NetDeviceOptions Options => _o;
    /// <summary>Whether the link is up (config status LINK_UP).</summary>
    public bool LinkUp => _linkUp;
    /// <summary>Queue pairs the driver uses (VQ_PAIRS_SET; 1 until it says otherwise).</summary>
    public int ActivePairs => _activePairs;
    /// <summary>The MAC address (config, or the last CTRL_MAC_ADDR_SET).</summary>
    public ReadOnlySpan<byte> Mac => _mac;
    /// <summary>The receive filter: promiscuous (CTRL_RX_PROMISC, on until the driver turns it off).</summary>
    public bool Promiscuous => _filter.Promisc;
    /// <summary>The receive filter: every multicast frame (CTRL_RX_ALLMULTI).</summary>
    public bool AllMulticast => _filter.AllMulti;
    /// <summary>Entries of the MAC filter table (unicast, multicast).</summary>
    public (int Unicast, int Multicast) MacTable => (_filter.Unicast.Length, _filter.Multicast.Length);

    /// <summary>The counters, summed over the queues (readable from any thread).</summary>
    public NetDeviceStats Stats
    {
        get
        {
            long Sum(Func<NetQueueCounters, long> f) => _queues.Sum(q => f(q.Counters));
            long SumRx(Func<NetQueueCounters, long> f) => _queues.Where((_, i) => i % 2 == 0 && i != CtrlIndex).Sum(q => f(q.Counters));
            long SumTx(Func<NetQueueCounters, long> f) => _queues.Where((_, i) => i % 2 == 1).Sum(q => f(q.Counters));
            return new NetDeviceStats
            {
                TxPackets = SumTx(c => Volatile.Read(ref c.Packets)), TxBytes = SumTx(c => Volatile.Read(ref c.Bytes)),
                TxShort = Sum(c => Volatile.Read(ref c.TxShort)), TxOversize = Sum(c => Volatile.Read(ref c.TxOversize)),
                TxBadGso = Sum(c => Volatile.Read(ref c.TxBadGso)), TxBadCsum = Sum(c => Volatile.Read(ref c.TxBadCsum)),
                TxLinkDown = Sum(c => Volatile.Read(ref c.TxLinkDown)), TxPortDropped = Sum(c => Volatile.Read(ref c.TxPortDropped)),
                TxFault = Sum(c => Volatile.Read(ref c.TxFault)),
                RxPackets = SumRx(c => Volatile.Read(ref c.Packets)), RxBytes = SumRx(c => Volatile.Read(ref c.Bytes)),
                RxLost = Sum(c => Volatile.Read(ref c.RxLost)), RxFiltered = Sum(c => Volatile.Read(ref c.RxFiltered)),
                RxBadHeader = Sum(c => Volatile.Read(ref c.RxBadHeader)), RxBadBuffers = Sum(c => Volatile.Read(ref c.RxBadBuffers)),
                RxNoBuffers = Sum(c => Volatile.Read(ref c.RxNoBuffers)), RxMergedBuffers = Sum(c => Volatile.Read(ref c.RxMerged)),
                CtrlOk = Sum(c => Volatile.Read(ref c.CtrlOk)), CtrlErr = Sum(c => Volatile.Read(ref c.CtrlErr)),
                CtrlMalformed = Sum(c => Volatile.Read(ref c.CtrlMalformed)), CopiedFrames = Sum(c => Volatile.Read(ref c.Copied)),
                RarpSent = Interlocked.Read(ref _rarpSent), RarpDropped = Interlocked.Read(ref _rarpDropped),
            };
        }
    }

    /// <summary>
    /// Packets and bytes per data queue for <see cref="NetDeviceMetrics"/>: (pair, direction, packets, bytes), the
    /// receive queue of pair p at index 2p and its transmit queue at 2p+1 (§5.1.2). Any thread.
    /// </summary>
    internal IEnumerable<(int Pair, string Direction, long Packets, long Bytes)> QueueCounters()
    {
        for (int i = 0; i < _queues.Length; i++)
        {
            if (i == CtrlIndex) continue;
            var c = _queues[i].Counters;
            yield return (i / 2, i % 2 == 0 ? "rx" : "tx", Volatile.Read(ref c.Packets), Volatile.Read(ref c.Bytes));
        }
    }

    // The control queue's index in the stats (before activation: where it sits with MQ).
    private int CtrlIndex => _ctrlQueue >= 0 ? _ctrlQueue : _o.ControlQueue ? 2 * _o.QueuePairs : -1;

    /// <inheritdoc/>
    public void ReadConfig(int offset, Span<byte> destination)
    {
        Span<byte> c = stackalloc byte[NetConfig.Size];
        _mac.CopyTo(c);
        BinaryPrimitives.WriteUInt16LittleEndian(c[NetConfig.StatusOffset..], (ushort)(_linkUp ? NetStatus.LinkUp : NetStatus.None));
        BinaryPrimitives.WriteUInt16LittleEndian(c[NetConfig.MaxVirtqueuePairsOffset..], (ushort)_o.QueuePairs);
        BinaryPrimitives.WriteUInt16LittleEndian(c[NetConfig.MtuOffset..], (ushort)_o.Mtu);
        c.Slice(offset, destination.Length).CopyTo(destination);
    }

    /// <inheritdoc/>
    // Every field is read-only for a modern driver (§5.1.4.2); a legacy driver's MAC write is not supported either.
    public void WriteConfig(int offset, ReadOnlySpan<byte> source) { }

    /// <inheritdoc/>
    public bool AcceptFeatures(ulong features, out string? reason)
    {
        bool Has(int b) => VirtioFeature.Has(features, b);
        // §5.1.3.1: offloads that depend on others.
        reason =
            (Has(NetFeature.GuestTso4) || Has(NetFeature.GuestTso6) || Has(NetFeature.GuestUfo)) && !Has(NetFeature.GuestCsum) ? "GUEST_TSO4/TSO6/UFO need GUEST_CSUM" :
            Has(NetFeature.GuestEcn) && !Has(NetFeature.GuestTso4) && !Has(NetFeature.GuestTso6) ? "GUEST_ECN needs GUEST_TSO4 or GUEST_TSO6" :
            (Has(NetFeature.HostTso4) || Has(NetFeature.HostTso6) || Has(NetFeature.HostUfo)) && !Has(NetFeature.Csum) ? "HOST_TSO4/TSO6/UFO need CSUM" :
            Has(NetFeature.HostEcn) && !Has(NetFeature.HostTso4) && !Has(NetFeature.HostTso6) ? "HOST_ECN needs HOST_TSO4 or HOST_TSO6" :
            (Has(NetFeature.CtrlRx) || Has(NetFeature.CtrlMacAddr)) && !Has(NetFeature.CtrlVq) ? "CTRL_RX and CTRL_MAC_ADDR need CTRL_VQ" :
            // A device with its own control queue needs it for MQ; over vhost-user the front-end keeps the control queue.
            _o.ControlQueue && Has(NetFeature.Mq) && !Has(NetFeature.CtrlVq) ? "MQ needs CTRL_VQ" :
            null;
        if (reason is not null) return false;
        try
        {
            foreach (var p in _ports) p.SetOffloads(features);
        }
        catch (IOException e)
        {
            // The port cannot deliver only what the driver takes (a TAP refusing TUNSETOFFLOAD): refuse the features.
            reason = $"the port refused the negotiated offloads: {e.Message}";
            return false;
        }
        return true;
    }

    /// <inheritdoc/>
    public void Activate(DeviceContext<TMem> context)
    {
        _features = context.Features;
        _hdrLen = VirtioNetHdr.SizeFor(_features);
        _mergeable = context.Has(NetFeature.MrgRxbuf);
        _filtering = context.Has(NetFeature.CtrlRx);
        _ctrlQueue = !_o.ControlQueue || !context.Has(NetFeature.CtrlVq) ? -1 : context.Has(NetFeature.Mq) ? 2 * _o.QueuePairs : 2;
        int mtu = context.Has(NetFeature.Mtu) ? _o.Mtu : 1500;
        int linkHeaders = NetConfig.EthHeaderLength + NetConfig.VlanHeaderLength;
        bool guestGso = context.Has(NetFeature.GuestTso4) || context.Has(NetFeature.GuestTso6) || context.Has(NetFeature.GuestUfo);
        _rxMaxFrame = guestGso ? NetConfig.MaxFrameLength : mtu + linkHeaders;
        _rxMinRoom = _hdrLen + mtu + linkHeaders;
        // §5.1.6.2: without GSO a frame is at most the MTU plus the link header (NET_MTU); a driver without NET_MTU may
        // raise its MTU as far as 64 KiB.
        _txMaxFrame = context.Has(NetFeature.Mtu) ? mtu + linkHeaders : NetConfig.MaxFrameLength;
        // With a control queue the driver starts on one pair (§5.1.6.5.5); without one (vhost-user: the front-end keeps the
        // control queue and enables rings itself) every ring the front-end starts is in use.
        _activePairs = _o.ControlQueue ? 1 : _o.QueuePairs;
        _filter = NetRxFilter.Initial(_mac);
        foreach (var q in _queues) q.ForgetStash();
        _ctx = context;
        for (int p = 0; p < _ports.Length; p++)
        {
            int rx = 2 * p;
            _ports[p].SetReceiveWakeup(_ports[p].ReadableHandle is null ? () => _ctx?.Wake(rx) : null);
        }
    }

    /// <inheritdoc/>
    public void Reset()
    {
        _ctx = null;
        foreach (var p in _ports) p.SetReceiveWakeup(null);
        foreach (var q in _queues)
        {
            q.Source?.Dispose();
            q.Source = null;
            q.ForgetStash();
        }
        foreach (var s in _services) s.Reset();
        _mac = (byte[])(_o.Mac ?? DefaultMac).Clone();
        _filter = NetRxFilter.Initial(_mac);
    }

    /// <inheritdoc/>
    /// <remarks>
    /// Through the first port (every port of one device reaches the same network: one TAP's queues, one switch port),
    /// with an empty virtio-net header; the port may be a transmit queue's at the same moment (<see cref="INetPort"/>
    /// allows concurrent transmits). Counted in <see cref="NetDeviceStats.RarpSent"/> / <see cref="NetDeviceStats.RarpDropped"/>.
    /// </remarks>
    public unsafe bool BroadcastRarp(ReadOnlySpan<byte> mac)
    {
        if (mac.Length != NetConfig.MacLength || (mac[0] & 1) != 0)
            throw new ArgumentException("the MAC address to announce must be 6 bytes and unicast (the first byte even)", nameof(mac));
        bool sent = false;
        if (_linkUp)
        {
            Span<byte> frame = stackalloc byte[RarpFrame.Length];
            RarpFrame.Write(frame, mac);
            fixed (byte* p = frame)
            {
                var v = new IoVec((nint)p, (nuint)frame.Length);
                sent = _ports[0].Transmit(default, new ReadOnlySpan<IoVec>(in v));
            }
        }
        Interlocked.Increment(ref sent ? ref _rarpSent : ref _rarpDropped);
        return sent;
    }

    /// <summary>Any thread: takes the link up or down; the driver is told with a config-change interrupt (STATUS).</summary>
    public void SetLink(bool up)
    {
        if (_linkUp == up) return;
        _linkUp = up;
        if (_ctx is not { } ctx) return;
        if (ctx.Has(NetFeature.Status)) ctx.ConfigChanged();
        if (up)
            for (int p = 0; p < _ports.Length; p++) ctx.Wake(2 * p);
    }

    /// <inheritdoc/>
    public void QueueNotify(int queue)
    {
        if (_ctx is not { } ctx || (uint)queue >= (uint)_queues.Length) return;
        if (queue == _ctrlQueue)
        {
            var h = new Control(this);
            _services[queue].Run(ctx, queue, ref h);
        }
        else if (queue % 2 == 1)
        {
            var h = new Transmit(this, _queues[queue], PortOf(queue), queue);
            _services[queue].Run(ctx, queue, ref h);
        }
        else Receive(queue);
    }

    /// <inheritdoc/>
    public void QueueStopping(int queue)
    {
        var st = _queues[queue];
        st.Source?.Dispose();
        st.Source = null;
        if (_ctx is not { } ctx || st.StashCount == 0) return;
        var q = ctx.Queues[queue];
        if (q is not null && ReferenceEquals(q, st.StashQueue))
        {
            // Buffers popped ahead of frames go back empty, or the driver would lose them across the stop.
            int n = st.StashCount;
            st.TakeFront(n);
            Array.Clear(st.Lengths, 0, n);
            q.AddUsedMany(st.Use.AsSpan(0, n), st.Lengths.AsSpan(0, n));
            Array.Clear(st.Use, 0, n);
            ctx.InterruptIfNeeded(queue);
        }
        st.ForgetStash();
    }

    private INetPort PortOf(int queue) => _ports.Length == 1 ? _ports[0] : _ports[queue / 2];

    // ---- transmit ----

    private uint Send(DeviceQueue<TMem> q, DescriptorChain chain, NetQueueState<TMem> st, INetPort port, int queue)
    {
        var c = st.Counters;
        int hdrLen = _hdrLen;
        if (chain.ReadableBytes < (ulong)(hdrLen + NetConfig.EthHeaderLength)) { NetQueueCounters.Add(ref c.TxShort); return 0; }
        Span<byte> hb = stackalloc byte[VirtioNetHdr.Size];
        var reader = new ChainReader<TMem>(q.Memory, chain);
        if (reader.Read(hb[..hdrLen], out int got) != MemStatus.Ok || got != hdrLen) { NetQueueCounters.Add(ref c.TxFault); return 0; }
        var hdr = VirtioNetHdr.Parse(hb[..hdrLen]);
        ulong frameLen = chain.ReadableBytes - (ulong)hdrLen;
        var verdict = CheckTx(ref hdr, frameLen);
        if (verdict != 0) { NetQueueCounters.Add(ref verdict == 1 ? ref c.TxOversize : ref verdict == 2 ? ref c.TxBadGso : ref c.TxBadCsum); return 0; }
        if (!_linkUp) { NetQueueCounters.Add(ref c.TxLinkDown); return 0; }
        var ctx = _ctx!;
        int token = ctx.BeginDirectIo(queue);
        try
        {
            int count = 0;
            IoVec[]? vectors = st.Vectors;   // full size already: Map never grows it
            var map = HostVectors.Map(q.Memory, chain.Readable, (ulong)hdrLen, frameLen, Access.Read, ref vectors, st.Vectors.Length, ref count);
            if (map == MemStatus.NoDirectAccess)
            {
                var buf = st.CopyBuffer(NetConfig.MaxFrameLength);
                if (reader.Read(buf.AsSpan(0, (int)frameLen), out got) != MemStatus.Ok || (ulong)got != frameLen) { NetQueueCounters.Add(ref c.TxFault); return 0; }
                st.Vectors[0] = new IoVec(PinnedAddress(buf), (nuint)frameLen);
                count = 1;
                NetQueueCounters.Add(ref c.Copied);
            }
            else if (map != MemStatus.Ok) { NetQueueCounters.Add(ref c.TxFault); return 0; }
            if (!port.Transmit(hdr, st.Vectors.AsSpan(0, count))) { NetQueueCounters.Add(ref c.TxPortDropped); return 0; }
        }
        finally { ctx.EndDirectIo(queue, token); }
        NetQueueCounters.Add(ref c.Packets);
        NetQueueCounters.Add(ref c.Bytes, (long)frameLen);
        return 0;
    }

    /// <summary>
    /// Checks a transmit header against the negotiated features and the frame (§5.1.6.2): 0 good (receive-only flags
    /// cleared), 1 too long, 2 segmentation not negotiated, 3 checksum offload not negotiated or outside the frame.
    /// </summary>
    private int CheckTx(ref VirtioNetHdr hdr, ulong frameLen)
    {
        byte gso = (byte)(hdr.GsoType & ~NetGsoType.Ecn);
        bool ecn = (hdr.GsoType & NetGsoType.Ecn) != 0;
        if (gso == NetGsoType.None)
        {
            if (ecn) return 2;
            if (frameLen > (ulong)_txMaxFrame) return 1;
            hdr = hdr with { GsoSize = 0 };
        }
        else
        {
            bool allowed = gso switch
            {
                NetGsoType.TcpV4 => Has(NetFeature.HostTso4),
                NetGsoType.TcpV6 => Has(NetFeature.HostTso6),
                NetGsoType.Udp => Has(NetFeature.HostUfo),
                _ => false,
            };
            if (!allowed || (ecn && !Has(NetFeature.HostEcn)) || hdr.GsoSize == 0) return 2;
            if (frameLen > NetConfig.MaxFrameLength) return 1;
            // A segmentation offload always comes with a partial checksum (§5.1.6.2.1).
            if ((hdr.Flags & NetHdrFlags.NeedsCsum) == 0) return 3;
        }
        if ((hdr.Flags & NetHdrFlags.NeedsCsum) != 0 &&
            (!Has(NetFeature.Csum) || (ulong)hdr.CsumStart + hdr.CsumOffset + 2 > frameLen)) return 3;
        // DATA_VALID and RSC_INFO mean something only on receive (§5.1.6.2.2): the port does not see them.
        hdr = hdr with { Flags = hdr.Flags & NetHdrFlags.NeedsCsum, NumBuffers = 0 };
        return 0;
    }

    private bool Has(int bit) => VirtioFeature.Has(_features, bit);

    // ---- receive ----

    /// <summary>On receiveq's owner thread: moves waiting frames into the driver's buffers (kick, port readable, wake).</summary>
    private void Receive(int queue)
    {
        if (_ctx is not { } ctx || queue == _ctrlQueue || queue / 2 >= _ports.Length) return;
        var q = ctx.Queues[queue];
        var st = _queues[queue];
        if (q is null || q.IsBroken) return;
        var port = _ports[queue / 2];
        if (!ReferenceEquals(st.StashQueue, q)) { st.ForgetStash(); st.StashQueue = q; }
        // Pair k receives only while the driver uses k pairs (VQ_PAIRS_SET, §5.1.6.5.5); the link must be up.
        if (!_linkUp || queue / 2 >= _activePairs) { StopPolling(st); return; }
        ulong need = (ulong)(_hdrLen + _rxMaxFrame);
        int budget = 2 * Math.Max((int)q.Size, 1);
        bool starved = false;
        while (budget-- > 0)
        {
            // Non-mergeable: one chain per frame (§5.1.6.3.1). Mergeable: enough buffers for the largest frame, or the whole ring.
            while ((st.StashCount == 0 || (_mergeable && st.StashBytes < need)) && st.StashCount < st.Stash.Length)
            {
                if (q.Pop(out var chain) != QueueStatus.Ok) break;
                if (chain!.WritableBytes < (ulong)_hdrLen)
                {
                    // §5.1.6.3.1: every receive buffer holds at least the header. Return it empty.
                    NetQueueCounters.Add(ref st.Counters.RxBadBuffers);
                    if (q.AddUsed(chain, 0) != QueueStatus.Ok) return;
                    continue;
                }
                st.Push(chain);
            }
            if (q.IsBroken) return;
            // Mergeable buffers that cannot hold the largest frame but hold an MTU-sized one serve when no more come: a
            // driver need not post a whole ring, and a larger frame is then lost and counted rather than waited for.
            if (st.StashCount == 0 || (_mergeable && st.StashBytes < need && st.StashCount < q.Size && st.StashBytes < (ulong)_rxMinRoom))
            {
                // Wait for the driver's next buffers (its kick); stop polling the port meanwhile, or a readable port would spin.
                starved = true;
                break;
            }
            int r = ReceiveOne(ctx, queue, q, st, port);
            if (r == 0) break;            // nothing waiting
            if (r < 0) { if (q.IsBroken) return; }
        }
        if (budget < 0) ctx.Wake(queue);
        if (starved) { NetQueueCounters.Add(ref st.Counters.RxNoBuffers); StopPolling(st); }
        else if (port.ReadableHandle is { } h && st.Source is null)
        {
            try { st.Source = ctx.AddEventSource(queue, h, st.OnReadable!); }
            catch (NotSupportedException) { }   // a host without an fd loop cannot serve an fd port
        }
        ctx.InterruptIfNeeded(queue);
    }

    private static void StopPolling(NetQueueState<TMem> st)
    {
        st.Source?.Dispose();
        st.Source = null;
    }

    /// <summary>One frame from the port into the stashed buffers: 1 delivered, 0 none waiting, -1 dropped.</summary>
    private int ReceiveOne(DeviceContext<TMem> ctx, int queue, DeviceQueue<TMem> q, NetQueueState<TMem> st, INetPort port)
    {
        var c = st.Counters;
        int hdrLen = _hdrLen;
        int chains = _mergeable ? st.StashCount : 1;
        int n;
        VirtioNetHdr hdr;
        Span<byte> dst = stackalloc byte[NetConfig.MacLength];
        bool copied = false;
        byte[]? buf = null;
        int token = ctx.BeginDirectIo(queue);
        try
        {
            int count = 0;
            var map = MemStatus.Ok;
            IoVec[]? vectors = st.Vectors;   // full size already: Map never grows it
            ulong room = 0;
            for (int i = 0; i < chains && map == MemStatus.Ok; i++)
            {
                var chain = st.StashAt(i);
                ulong skip = i == 0 ? (ulong)hdrLen : 0;
                ulong take = Math.Min(chain.WritableBytes - skip, (ulong)_rxMaxFrame - room);
                map = HostVectors.Map(q.Memory, chain.Writable, skip, take, Access.Write, ref vectors, st.Vectors.Length, ref count);
                room += take;
                if (room >= (ulong)_rxMaxFrame) break;
            }
            if (map == MemStatus.NoDirectAccess)
            {
                // The copy path: the frame lands in the device's buffer, then goes to the chains through the address space.
                room = 0;
                for (int i = 0; i < chains; i++) room += st.StashAt(i).WritableBytes;
                ulong cap = Math.Min(room - (ulong)hdrLen, (ulong)_rxMaxFrame);
                buf = st.CopyBuffer(hdrLen + NetConfig.MaxFrameLength);
                st.Vectors[0] = new IoVec(PinnedAddress(buf) + hdrLen, (nuint)cap);
                count = 1;
                copied = true;
            }
            else if (map != MemStatus.Ok)
            {
                // A translation the pop checked is gone (the driver unmapped a buffer it offered): give the buffers back empty.
                NetQueueCounters.Add(ref c.RxBadBuffers);
                return UseEmpty(q, st, chains);
            }
            n = port.Receive(st.Vectors.AsSpan(0, count), out hdr);
            if (n > 0) ReadDestination(st.Vectors.AsSpan(0, count), dst);
        }
        finally { ctx.EndDirectIo(queue, token); }
        if (n == 0) return 0;
        if (n < 0) { NetQueueCounters.Add(ref c.RxLost); return -1; }
        if (copied) NetQueueCounters.Add(ref c.Copied);
        if (!RxHeaderAllowed(hdr)) { NetQueueCounters.Add(ref c.RxBadHeader); return -1; }
        // Filtered frames leave the buffers unused: the driver never sees what was written into them.
        if (_filtering && !_filter.Accepts(dst)) { NetQueueCounters.Add(ref c.RxFiltered); return -1; }

        // Which chains the header and frame cover, and how much of each.
        ulong left = (ulong)(hdrLen + n);
        int used = 0;
        while (left > 0 && used < chains)
        {
            uint len = (uint)Math.Min(st.StashAt(used).WritableBytes, left);
            st.Lengths[used++] = len;
            left -= len;
        }
        hdr = hdr with { NumBuffers = (ushort)(_mergeable ? used : 0) };
        if (copied)
        {
            hdr.Write(buf.AsSpan(0, hdrLen));
            if (!WriteCopied(q, st, buf!, hdrLen + n, used)) { NetQueueCounters.Add(ref c.RxBadBuffers); return UseEmpty(q, st, chains); }
        }
        else
        {
            Span<byte> hb = stackalloc byte[VirtioNetHdr.Size];
            hdr.Write(hb[..hdrLen]);
            var w = new ChainWriter<TMem>(q.Memory, st.StashAt(0));
            if (w.Write(hb[..hdrLen], out int wrote) != MemStatus.Ok || wrote != hdrLen) { NetQueueCounters.Add(ref c.RxBadBuffers); return UseEmpty(q, st, chains); }
        }
        st.TakeFront(used);
        var status = q.AddUsedMany(st.Use.AsSpan(0, used), st.Lengths.AsSpan(0, used));
        Array.Clear(st.Use, 0, used);
        if (status != QueueStatus.Ok) return -1;
        NetQueueCounters.Add(ref c.Packets);
        NetQueueCounters.Add(ref c.Bytes, n);
        if (used > 1) NetQueueCounters.Add(ref c.RxMerged, used - 1);
        return 1;
    }

    private static int UseEmpty(DeviceQueue<TMem> q, NetQueueState<TMem> st, int chains)
    {
        st.TakeFront(chains);
        Array.Clear(st.Lengths, 0, chains);
        q.AddUsedMany(st.Use.AsSpan(0, chains), st.Lengths.AsSpan(0, chains));
        Array.Clear(st.Use, 0, chains);
        return -1;
    }

    private static bool WriteCopied(DeviceQueue<TMem> q, NetQueueState<TMem> st, byte[] buf, int total, int used)
    {
        int at = 0;
        for (int i = 0; i < used; i++)
        {
            var w = new ChainWriter<TMem>(q.Memory, st.StashAt(i));
            int len = (int)st.Lengths[i];
            if (w.Write(buf.AsSpan(at, len), out int wrote) != MemStatus.Ok || wrote != len) return false;
            at += len;
        }
        return at == total;
    }

    private static unsafe void ReadDestination(ReadOnlySpan<IoVec> vectors, Span<byte> dst)
    {
        int at = 0;
        foreach (var v in vectors)
        {
            int n = (int)Math.Min((nuint)(dst.Length - at), v.Length);
            new ReadOnlySpan<byte>((void*)v.Base, n).CopyTo(dst[at..]);
            at += n;
            if (at == dst.Length) return;
        }
    }

    /// <summary>A header from the port must only use what the driver negotiated (§5.1.6.4.1).</summary>
    private bool RxHeaderAllowed(in VirtioNetHdr hdr)
    {
        if ((hdr.Flags & NetHdrFlags.NeedsCsum) != 0 && !Has(NetFeature.GuestCsum)) return false;
        if ((hdr.Flags & NetHdrFlags.RscInfo) != 0) return false;
        byte gso = (byte)(hdr.GsoType & ~NetGsoType.Ecn);
        if ((hdr.GsoType & NetGsoType.Ecn) != 0 && !Has(NetFeature.GuestEcn)) return false;
        return gso switch
        {
            NetGsoType.None => true,
            NetGsoType.TcpV4 => Has(NetFeature.GuestTso4),
            NetGsoType.TcpV6 => Has(NetFeature.GuestTso6),
            NetGsoType.Udp => Has(NetFeature.GuestUfo),
            _ => false,
        };
    }

    private static unsafe nint PinnedAddress(byte[] pinned) => (nint)Unsafe.AsPointer(ref pinned[0]);

    // ---- control ----

    private uint Command(DeviceQueue<TMem> q, DescriptorChain chain)
    {
        var c = _queues[_ctrlQueue].Counters;
        // §5.1.6.5: class, command and data device-readable, then a device-writable ack byte.
        if (chain.ReadableBytes < 2 || chain.WritableBytes < 1) { NetQueueCounters.Add(ref c.CtrlMalformed); return 0; }
        byte ack = NetCtrlAck.Err;
        if (chain.ReadableBytes <= (ulong)_ctrlScratch.Length)
        {
            var reader = new ChainReader<TMem>(q.Memory, chain);
            int len = (int)chain.ReadableBytes;
            if (reader.Read(_ctrlScratch.AsSpan(0, len), out int got) == MemStatus.Ok && got == len)
                ack = Execute(_ctrlScratch[0], _ctrlScratch[1], _ctrlScratch.AsSpan(2, len - 2));
        }
        NetQueueCounters.Add(ref ack == NetCtrlAck.Ok ? ref c.CtrlOk : ref c.CtrlErr);
        var writer = new ChainWriter<TMem>(q.Memory, chain);
        writer.Write([ack], out _);
        return writer.Written;
    }

    /// <summary>One control command; the data must have exactly the command's size (§5.1.6.5).</summary>
    private byte Execute(byte cls, byte cmd, ReadOnlySpan<byte> data)
    {
        const byte ok = NetCtrlAck.Ok, err = NetCtrlAck.Err;
        switch (cls)
        {
            case NetCtrlClass.Rx when Has(NetFeature.CtrlRx) && cmd is NetCtrlRx.Promisc or NetCtrlRx.AllMulti:
                if (data.Length != 1 || data[0] > 1) return err;
                _filter = cmd == NetCtrlRx.Promisc ? _filter.With(promisc: data[0] == 1) : _filter.With(allMulti: data[0] == 1);
                return ok;
            case NetCtrlClass.Mac when cmd == NetCtrlMac.TableSet && Has(NetFeature.CtrlRx):
                if (!ParseMacTable(data, out var uni, out int used) || !ParseMacTable(data[used..], out var multi, out int used2) || used + used2 != data.Length)
                    return err;
                _filter = _filter.With(unicast: uni, multicast: multi);
                return ok;
            case NetCtrlClass.Mac when cmd == NetCtrlMac.AddrSet && Has(NetFeature.CtrlMacAddr):
                if (data.Length != NetConfig.MacLength || (data[0] & 1) != 0) return err;
                _mac = data.ToArray();
                _filter = _filter.With(mac: NetRxFilter.Key(data));
                return ok;
            case NetCtrlClass.Mq when cmd == NetCtrlMq.VqPairsSet && Has(NetFeature.Mq):
                if (data.Length != 2) return err;
                int pairs = BinaryPrimitives.ReadUInt16LittleEndian(data);
                if (pairs < NetCtrlMq.VqPairsMin || pairs > _o.QueuePairs) return err;
                _activePairs = pairs;
                if (_ctx is { } ctx)
                    for (int p = 0; p < _ports.Length && p < pairs; p++) ctx.Wake(2 * p);
                return ok;
            default:
                return err;
        }
    }

    /// <summary><c>struct virtio_net_ctrl_mac</c>: le32 entries, then that many 6-byte addresses.</summary>
    private static bool ParseMacTable(ReadOnlySpan<byte> data, out ulong[] macs, out int consumed)
    {
        macs = [];
        consumed = 0;
        if (data.Length < 4) return false;
        uint entries = BinaryPrimitives.ReadUInt32LittleEndian(data);
        if (entries > MaxMacTableEntries || 4 + entries * NetConfig.MacLength > (uint)data.Length) return false;
        macs = new ulong[entries];
        for (int i = 0; i < entries; i++) macs[i] = NetRxFilter.Key(data.Slice(4 + i * NetConfig.MacLength, NetConfig.MacLength));
        consumed = 4 + (int)entries * NetConfig.MacLength;
        return true;
    }

    private readonly struct Transmit(NetDevice<TMem> d, NetQueueState<TMem> st, INetPort port, int queue) : IChainHandler<TMem>
    {
        public bool Ready => true;
        public uint Handle(DeviceQueue<TMem> q, DescriptorChain chain) => d.Send(q, chain, st, port, queue);
    }

    private readonly struct Control(NetDevice<TMem> d) : IChainHandler<TMem>
    {
        public bool Ready => true;
        public uint Handle(DeviceQueue<TMem> q, DescriptorChain chain) => d.Command(q, chain);
    }
}
