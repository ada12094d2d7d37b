using System.Buffers.Binary;
using Microsoft.Extensions.Logging;
using VirtioSharp.Devices;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// One vhost-user connection to a front-end (QEMU): the message loop and the state it builds — features, memory
/// table, IOTLB, vrings, inflight region, status. Every message is read whole, bounded and validated before it changes
/// anything; a malformed message ends the connection with a log line that names it. The device model is the same code
/// the simulated transports drive; only the way it reaches memory (mapped regions, IOTLB) differs.
/// </summary>
public sealed class VhostUserBackend : IDisposable
{
    public const int MaxMemSlots = 32;
    public const int BaselineRegions = 8;
    private const ulong ProtocolFeaturesBit = 1UL << VhostHeader.ProtocolFeaturesBit;

    private readonly FdSocket _sock;
    private readonly IVirtioDevice<DeviceMemory<TranslatorRef, RamPort>> _device;
    private readonly ILogger _log;
    private readonly VhostStats _stats;
    private readonly Vring[] _vrings;
    private readonly DeviceQueue<DeviceMemory<TranslatorRef, RamPort>>?[] _liveQueues;
    private readonly List<(VhostMemoryRegion Region, SafeFd Fd)> _regionFds = new();
    private readonly VhostIotlb _iotlb;
    private readonly object _backendLock = new();
    private VhostMemoryTable? _memory;
    private FdSocket? _backendChannel;
    private SafeFd? _inflightFd;
    private MappedRegion? _inflightMap;
    private ushort _inflightQueueSize;
    private ulong _features;
    private ulong _protocolFeatures;
    private bool _featuresSet;
    private byte _status;

    internal VhostUserBackend(FdSocket socket, IVirtioDevice<DeviceMemory<TranslatorRef, RamPort>> device, ILogger log, VhostStats stats)
    {
        _sock = socket;
        _device = device;
        _log = log;
        _stats = stats;
        _vrings = Enumerable.Range(0, device.QueueCount).Select(i => new Vring(i)).ToArray();
        _liveQueues = new DeviceQueue<DeviceMemory<TranslatorRef, RamPort>>?[device.QueueCount];
        _iotlb = new VhostIotlb(() => _memory)
        {
            RequestMiss = SendIotlbMiss,
            ReportAccessFail = (iova, perm) => SendIotlb(IotlbMsgType.AccessFail, iova, perm),
        };
    }

    public ulong OfferedFeatures => _device.DeviceFeatures | ProtocolFeaturesBit;

    public static ulong OfferedProtocolFeatures =>
        Bit(VhostProtocolFeature.Mq) | Bit(VhostProtocolFeature.ReplyAck) | Bit(VhostProtocolFeature.BackendReq) |
        Bit(VhostProtocolFeature.Config) | Bit(VhostProtocolFeature.InflightShmfd) | Bit(VhostProtocolFeature.ResetDevice) |
        Bit(VhostProtocolFeature.ConfigureMemSlots) | Bit(VhostProtocolFeature.Status) | Bit(VhostProtocolFeature.BackendSendFd);

    private static ulong Bit(int b) => 1UL << b;
    private bool Has(int protocolBit) => (_protocolFeatures & Bit(protocolBit)) != 0;
    private bool AccessPlatform => VirtioFeature.Has(_features, VirtioFeature.AccessPlatform);
    private bool Packed => VirtioFeature.Has(_features, VirtioFeature.RingPacked);

    internal VhostIotlb Iotlb => _iotlb;

    /// <summary>Serves messages until the front-end disconnects or breaks the protocol.</summary>
    public void Run()
    {
        Span<byte> hb = stackalloc byte[VhostHeader.Length];
        var payload = new byte[VhostHeader.MaxPayload];
        var fds = new List<SafeFd>();
        try
        {
            while (true)
            {
                fds.Clear();
                if (!_sock.ReceiveExact(hb, fds)) { _log.LogInformation("front-end closed the connection"); return; }
                var h = VhostHeader.Parse(hb);
                var req = (VhostRequest)h.Request;
                try
                {
                    if ((h.Flags & VhostHeader.VersionMask) != VhostHeader.Version)
                        throw new VhostProtocolException($"{req}: header version {h.Flags & VhostHeader.VersionMask}, expected 1");
                    if (h.Size > VhostHeader.MaxPayload)
                        throw new VhostProtocolException($"{req}: payload size {h.Size} exceeds the maximum {VhostHeader.MaxPayload}");
                    try
                    {
                        if (h.Size > 0 && !_sock.ReceiveExact(payload.AsSpan(0, (int)h.Size), null))
                            throw new VhostProtocolException($"{req}: connection closed before the payload");
                    }
                    catch (EndOfStreamException e)
                    {
                        throw new VhostProtocolException($"{req}: connection closed inside the {h.Size}-byte payload ({e.Message})");
                    }
                    _stats.Messages++;
                    bool replied = Dispatch(req, h, payload.AsSpan(0, (int)h.Size), fds);
                    if (!replied && h.NeedReply && Has(VhostProtocolFeature.ReplyAck)) Reply(req, 0UL);
                }
                finally
                {
                    // Whatever the handler did not take ownership of is closed here, on every path.
                    foreach (var fd in fds) if (!fd.IsClosed && !_kept.Contains(fd)) fd.Dispose();
                    _kept.Clear();
                }
            }
        }
        catch (VhostProtocolException e)
        {
            _stats.ProtocolErrors++;
            _log.LogError("closing the connection: {Reason}", e.Message);
        }
        catch (EndOfStreamException e)
        {
            _log.LogWarning("front-end went away mid-message: {Reason}", e.Message);
        }
        catch (IOException e)
        {
            _log.LogWarning("connection error: {Reason}", e.Message);
        }
    }

    private readonly HashSet<SafeFd> _kept = new();

    private SafeFd Keep(SafeFd fd)
    {
        _kept.Add(fd);
        return fd;
    }

    private static void ExpectFds(VhostRequest req, List<SafeFd> fds, int count)
    {
        if (fds.Count != count)
            throw new VhostProtocolException($"{req}: expected {count} file descriptor(s), got {fds.Count}");
    }

    private Vring Ring(VhostRequest req, uint index)
    {
        if (index >= _vrings.Length)
            throw new VhostProtocolException($"{req}: vring index {index} is out of range (the device has {_vrings.Length} queues)");
        return _vrings[index];
    }

    /// <summary>Handles one message; returns true if it sent a reply itself.</summary>
    private bool Dispatch(VhostRequest req, VhostHeader h, ReadOnlySpan<byte> p, List<SafeFd> fds)
    {
        var r = new PayloadReader(p, req);
        switch (req)
        {
            case VhostRequest.GetFeatures:
                Reply(req, OfferedFeatures);
                return true;
            case VhostRequest.SetFeatures:
            {
                ulong f = r.U64();
                ulong unknown = f & ~OfferedFeatures;
                if (unknown != 0) throw new VhostProtocolException($"{req}: front-end acked features never offered: {VirtioFeature.Describe(unknown, _device.DeviceId)}");
                _features = f & ~ProtocolFeaturesBit;
                _featuresSet = true;
                _log.LogInformation("features: {Features}", VirtioFeature.Describe(_features, _device.DeviceId));
                // Without PROTOCOL_FEATURES rings are enabled as soon as they have a kick fd.
                if ((f & ProtocolFeaturesBit) == 0) foreach (var v in _vrings) v.Enabled = true;
                return false;
            }
            case VhostRequest.SetOwner:
                return false;
            case VhostRequest.ResetOwner:
            case VhostRequest.ResetDevice:
                ResetDevice();
                return false;
            case VhostRequest.GetProtocolFeatures:
                Reply(req, OfferedProtocolFeatures);
                return true;
            case VhostRequest.SetProtocolFeatures:
            {
                ulong f = r.U64();
                if ((f & ~OfferedProtocolFeatures) != 0) throw new VhostProtocolException($"{req}: unknown protocol features 0x{f & ~OfferedProtocolFeatures:x}");
                _protocolFeatures = f;
                return false;
            }
            case VhostRequest.GetQueueNum:
                Reply(req, (ulong)_vrings.Length);
                return true;
            case VhostRequest.GetMaxMemSlots:
                Reply(req, (ulong)MaxMemSlots);
                return true;
            case VhostRequest.SetMemTable:
                SetMemTable(r, fds);
                return false;
            case VhostRequest.AddMemReg:
            {
                ExpectFds(req, fds, 1);
                r.U64();
                var region = VhostMemoryRegion.Parse(r.Bytes(VhostMemoryRegion.Length));
                if (_regionFds.Count >= MaxMemSlots) throw new VhostProtocolException($"{req}: more than {MaxMemSlots} memory regions");
                var list = _regionFds.Select(x => x.Region).Append(region).ToList();
                ReplaceMemory(list, _regionFds.Select(x => x.Fd).Append(Keep(fds[0])).ToList());
                return false;
            }
            case VhostRequest.RemMemReg:
            {
                r.U64();
                var region = VhostMemoryRegion.Parse(r.Bytes(VhostMemoryRegion.Length));
                int i = _regionFds.FindIndex(x => x.Region.GuestPhysAddr == region.GuestPhysAddr && x.Region.MemorySize == region.MemorySize && x.Region.UserspaceAddr == region.UserspaceAddr);
                if (i < 0) throw new VhostProtocolException($"{req}: no region at gpa 0x{region.GuestPhysAddr:x} size 0x{region.MemorySize:x}");
                var removed = _regionFds[i].Fd;
                var rest = _regionFds.Where((_, k) => k != i).ToList();
                ReplaceMemory(rest.Select(x => x.Region).ToList(), rest.Select(x => x.Fd).ToList());
                removed.Dispose();
                return false;
            }
            case VhostRequest.SetVringNum:
            {
                var v = Ring(req, r.U32());
                uint num = r.U32();
                if (!SplitRingLayout.IsValidSize((int)num, Packed) || num > _device.MaxQueueSize)
                    throw new VhostProtocolException($"{req}: vring {v.Index} size {num} is not {(Packed ? "a size" : "a power of two")} in 1..{_device.MaxQueueSize}");
                if (v.Started) throw new VhostProtocolException($"{req}: vring {v.Index} is running");
                v.Num = (ushort)num;
                return false;
            }
            case VhostRequest.SetVringAddr:
            {
                var v = Ring(req, r.U32());
                r.U32();   // flags: logging is not offered
                ulong desc = r.U64(), used = r.U64(), avail = r.U64();
                r.U64();
                if (v.Started) throw new VhostProtocolException($"{req}: vring {v.Index} is running");
                (v.DescAddr, v.UsedAddr, v.AvailAddr, v.AddrSet) = (desc, used, avail, true);
                return false;
            }
            case VhostRequest.SetVringBase:
            {
                var v = Ring(req, r.U32());
                uint num = r.U32();
                // Packed rings carry both indexes and wrap counters in the 32 bits (QEMU 7.2 encoding).
                if (!Packed && num > 0xFFFF) throw new VhostProtocolException($"{req}: split vring base {num} does not fit 16 bits");
                if (v.Started) throw new VhostProtocolException($"{req}: vring {v.Index} is running");
                v.Base = num;
                return false;
            }
            case VhostRequest.GetVringBase:
            {
                var v = Ring(req, r.U32());
                r.U32();
                if (!v.Started && !v.EverStarted) _log.LogWarning("GET_VRING_BASE for vring {Index}, which was never started: answering its base {Base}", v.Index, v.Base);
                StopRing(v);
                Span<byte> b = stackalloc byte[8];
                BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)v.Index);
                BinaryPrimitives.WriteUInt32LittleEndian(b[4..], v.Base);
                Reply(req, b);
                // GET_VRING_BASE also stops the ring for good until a new kick fd arrives.
                v.Kick?.Dispose();
                v.Kick = null;
                return true;
            }
            case VhostRequest.SetVringKick:
            case VhostRequest.SetVringCall:
            case VhostRequest.SetVringErr:
            {
                ulong u = r.U64();
                var v = Ring(req, (uint)(u & 0xFF));
                bool noFd = (u & 0x100) != 0;
                if ((u & ~0x1FFUL) != 0) throw new VhostProtocolException($"{req}: reserved bits set in 0x{u:x}");
                ExpectFds(req, fds, noFd ? 0 : 1);
                if (noFd && req == VhostRequest.SetVringKick) throw new VhostProtocolException($"{req}: polling mode (no kick fd) is not supported");
                var ev = noFd ? null : new EventFd(Keep(fds[0]));
                if (req == VhostRequest.SetVringKick)
                {
                    StopRing(v);
                    v.Kick?.Dispose();
                    v.Kick = ev;
                    TryStart(v);
                }
                else if (req == VhostRequest.SetVringCall) { var old = v.Call; v.Call = ev; old?.Dispose(); }
                else { var old = v.Err; v.Err = ev; old?.Dispose(); }
                return false;
            }
            case VhostRequest.SetVringEnable:
            {
                var v = Ring(req, r.U32());
                uint on = r.U32();
                if (on > 1) throw new VhostProtocolException($"{req}: value {on} is not 0 or 1");
                v.Enabled = on == 1;
                if (v.Enabled) TryStart(v); else StopRing(v);
                return false;
            }
            case VhostRequest.SetBackendReqFd:
            {
                ExpectFds(req, fds, 1);
                lock (_backendLock)
                {
                    _backendChannel?.Dispose();
                    _backendChannel = new FdSocket(Keep(fds[0]));
                }
                return false;
            }
            case VhostRequest.IotlbMsg:
                HandleIotlb(ref r);
                return false;
            case VhostRequest.GetConfig:
            {
                uint offset = r.U32(), size = r.U32(), flags = r.U32();
                if (size > 256 || offset > 256 || r.Remaining < size)
                    throw new VhostProtocolException($"{req}: offset {offset} size {size} with {r.Remaining} payload bytes");
                var reply = new byte[12 + size];
                BinaryPrimitives.WriteUInt32LittleEndian(reply, offset);
                BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(4), size);
                BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(8), flags);
                // Bytes past the device's config read as zero; QEMU wants exactly the size it asked for.
                int avail = Math.Max(0, Math.Min((int)size, _device.ConfigSize - (int)offset));
                if (avail > 0) _device.ReadConfig((int)offset, reply.AsSpan(12, avail));
                Reply(req, reply);
                return true;
            }
            case VhostRequest.SetConfig:
            {
                uint offset = r.U32(), size = r.U32();
                r.U32();
                if (size > 256 || r.Remaining < size || offset + size > (uint)_device.ConfigSize)
                    throw new VhostProtocolException($"{req}: write of {size} bytes at {offset} is outside the {_device.ConfigSize}-byte config");
                _device.WriteConfig((int)offset, r.Bytes((int)size));
                return false;
            }
            case VhostRequest.GetInflightFd:
                GetInflightFd(ref r);
                return true;
            case VhostRequest.SetInflightFd:
                SetInflightFd(ref r, fds);
                return false;
            case VhostRequest.SetStatus:
            {
                ulong s = r.U64();
                if (s > 0xFF) throw new VhostProtocolException($"{req}: status 0x{s:x} does not fit a byte");
                _status = (byte)s;
                if (_status == 0) ResetDevice();
                return false;
            }
            case VhostRequest.GetStatus:
                Reply(req, (ulong)_status);
                return true;
            default:
                throw new VhostProtocolException($"unsupported request {req} ({h.Request})");
        }
    }

    private void SetMemTable(PayloadReader r, List<SafeFd> fds)
    {
        uint n = r.U32();
        r.U32();
        if (n == 0 || n > BaselineRegions) throw new VhostProtocolException($"SET_MEM_TABLE: {n} regions (1..{BaselineRegions} allowed)");
        var regions = new List<VhostMemoryRegion>();
        for (int i = 0; i < n; i++) regions.Add(VhostMemoryRegion.Parse(r.Bytes(VhostMemoryRegion.Length)));
        ExpectFds(VhostRequest.SetMemTable, fds, (int)n);
        var old = _regionFds.Select(x => x.Fd).ToList();
        ReplaceMemory(regions, fds.Select(Keep).ToList());
        foreach (var fd in old) fd.Dispose();
    }

    /// <summary>Maps a new table first, then swaps it in with every running ring paused around the swap.</summary>
    private void ReplaceMemory(List<VhostMemoryRegion> regions, List<SafeFd> fds)
    {
        var table = VhostMemoryTable.Map(regions, fds);
        var running = _vrings.Where(v => v.Started).ToList();
        foreach (var v in running) StopRing(v);
        var old = _memory;
        _memory = table;
        _regionFds.Clear();
        _regionFds.AddRange(regions.Zip(fds));
        old?.Dispose();
        foreach (var v in running) TryStart(v);
        _log.LogInformation("memory table: {Regions}", string.Join(", ", regions.Select(x => $"gpa 0x{x.GuestPhysAddr:x}+0x{x.MemorySize:x}")));
    }

    private void HandleIotlb(ref PayloadReader r)
    {
        ulong iova = r.U64(), size = r.U64(), uaddr = r.U64();
        byte perm = r.U8(), type = r.U8();
        _log.LogDebug("IOTLB {Type} iova 0x{Iova:x} size 0x{Size:x} uaddr 0x{Uaddr:x} perm {Perm}", type == IotlbMsgType.Update ? "UPDATE" : "INVALIDATE", iova, size, uaddr, perm);
        switch (type)
        {
            case IotlbMsgType.Update:
                _iotlb.Update(iova, size, uaddr, perm);
                break;
            case IotlbMsgType.Invalidate:
                _iotlb.Invalidate(iova, size);
                break;
            default:
                throw new VhostProtocolException($"IOTLB_MSG: type {type} is not UPDATE or INVALIDATE");
        }
    }

    private bool SendIotlbMiss(ulong iova, byte perm) => SendIotlb(IotlbMsgType.Miss, iova, perm);

    private bool SendIotlb(byte type, ulong iova, byte perm)
    {
        _log.LogDebug("IOTLB {Type} sent for iova 0x{Iova:x} perm {Perm}", type == IotlbMsgType.Miss ? "MISS" : "ACCESS_FAIL", iova, perm);
        Span<byte> m = stackalloc byte[VhostHeader.Length + IotlbMsgType.Length];
        m.Clear();
        new VhostHeader((uint)VhostBackendRequest.IotlbMsg, VhostHeader.Version, IotlbMsgType.Length).Write(m);
        BinaryPrimitives.WriteUInt64LittleEndian(m[12..], iova);
        m[12 + 24] = perm;
        m[12 + 25] = type;
        lock (_backendLock)
        {
            if (_backendChannel is null) return false;
            try { _backendChannel.Send(m); }
            catch (IOException e) { _log.LogWarning("back-end channel: {Reason}", e.Message); return false; }
        }
        return true;
    }

    // The running workers hold pointers into the current region: it may only change while every ring is stopped.
    private void ExpectRingsStopped(VhostRequest req)
    {
        foreach (var v in _vrings)
            if (v.Started) throw new VhostProtocolException($"{req} while vring {v.Index} is running: stop the rings (GET_VRING_BASE) first");
    }

    private void GetInflightFd(ref PayloadReader r)
    {
        ExpectRingsStopped(VhostRequest.GetInflightFd);
        r.U64(); r.U64();
        ushort queues = r.U16(), queueSize = r.U16();
        if (queues == 0 || queues > _vrings.Length || queueSize == 0 || queueSize > _device.MaxQueueSize || !ValidInflightSize(queueSize))
            throw new VhostProtocolException($"GET_INFLIGHT_FD: {queues} queues of size {queueSize} do not fit this device");
        // QEMU sends SET_FEATURES before this message, so the ring layout (and with it the region layout) is known.
        ulong size = InflightQueueBytes(queueSize) * queues;
        var fd = MemFd.Create("vhost-inflight", size);
        var map = MappedRegion.Map(fd, size, 0);
        unsafe { new Span<byte>((void*)map.Address, (int)size).Clear(); }
        InstallInflight(fd, map, queueSize);
        // struct VhostUserInflight is 20 bytes of fields padded to 24; QEMU checks the padded size.
        Span<byte> b = stackalloc byte[24];
        b.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(b, size);
        BinaryPrimitives.WriteUInt64LittleEndian(b[8..], 0);
        BinaryPrimitives.WriteUInt16LittleEndian(b[16..], queues);
        BinaryPrimitives.WriteUInt16LittleEndian(b[18..], queueSize);
        Reply(VhostRequest.GetInflightFd, b, [fd]);
    }

    private void SetInflightFd(ref PayloadReader r, List<SafeFd> fds)
    {
        ulong size = r.U64(), offset = r.U64();
        ushort queues = r.U16(), queueSize = r.U16();
        ExpectFds(VhostRequest.SetInflightFd, fds, 1);
        ExpectRingsStopped(VhostRequest.SetInflightFd);
        if (queues == 0 || queues > _vrings.Length || !ValidInflightSize(queueSize) || queueSize > _device.MaxQueueSize ||
            size < InflightQueueBytes(queueSize) * queues || size > 64UL << 20 || offset > size || offset % 64 != 0)
            throw new VhostProtocolException($"SET_INFLIGHT_FD: {queues} queues of size {queueSize} in {size} bytes at offset {offset} is inconsistent");
        var fd = Keep(fds[0]);
        // A mapping past the end of the file would SIGBUS on first touch.
        if (fd.GetSize() < (long)(size + offset))
            throw new VhostProtocolException($"SET_INFLIGHT_FD: the fd holds {fd.GetSize()} bytes, fewer than offset {offset} + size {size}");
        var map = MappedRegion.Map(fd, size + offset, 0);
        InstallInflight(fd, map, queueSize, offset);
        _log.LogInformation("inflight region restored: {Queues} queues of {Size}", queues, queueSize);
    }

    private void InstallInflight(SafeFd fd, MappedRegion map, ushort queueSize, ulong offset = 0)
    {
        _inflightMap?.Dispose();
        if (_inflightFd is not null && _inflightFd != fd) _inflightFd.Dispose();
        _inflightFd = fd;
        _inflightMap = map;
        _inflightQueueSize = queueSize;
        unsafe
        {
            ulong per = InflightQueueBytes(queueSize);
            for (int i = 0; i < _vrings.Length; i++)
            {
                ulong at = offset + per * (ulong)i;
                bool fits = at + per <= map.Length;
                byte* p = (byte*)map.Address + at;
                _vrings[i].Inflight = fits && !PackedRings ? new InflightQueue(p, queueSize) : null;
                _vrings[i].PackedInflight = fits && PackedRings ? new PackedInflightQueue(p, queueSize) : null;
            }
        }
    }

    private bool PackedRings => VirtioFeature.Has(_features, VirtioFeature.RingPacked);

    private bool ValidInflightSize(ushort queueSize) =>
        PackedRings ? PackedRing.IsValidSize(queueSize) : SplitRingLayout.IsValidSize(queueSize);

    private ulong InflightQueueBytes(ushort queueSize) =>
        PackedRings ? PackedInflightQueue.QueueBytes(queueSize) : InflightQueue.QueueBytes(queueSize);

    private void TryStart(Vring v)
    {
        if (v.Started || v.Kick is null || !v.Enabled || !v.AddrSet || v.Num == 0 || _memory is null || !_featuresSet) return;
        v.Start(Serve, _log);
    }

    private void StopRing(Vring v)
    {
        if (!v.Started) return;
        v.Stop();
        if (v.Queue is { } q) v.Base = q.IsPacked ? q.PackedBase : q.NextAvail;
        _liveQueues[v.Index] = null;
        v.Queue = null;
    }

    /// <summary>The worker: build the queue in the right address space, recover inflight requests, then serve kicks.</summary>
    private void Serve(Vring v)
    {
        var mem = _memory!;
        var opts = QueueOptions.FromFeatures(_features);
        SplitRingLayout layout;
        IAddressTranslator translator;
        if (AccessPlatform)
        {
            // Everything is an IOVA, translated through the IOTLB the front-end fills.
            translator = _iotlb;
            layout = new SplitRingLayout(v.Num, v.DescAddr, v.AvailAddr, v.UsedAddr, opts.EventIdx, RingEndian.Little);
        }
        else
        {
            // Ring addresses are front-end user addresses; descriptors carry guest-physical ones.
            translator = IdentityTranslator.Instance;
            // Packed: desc = descriptor ring, avail = driver event area, used = device event area (4 bytes each).
            if (!mem.TryUserToGpa(v.DescAddr, SplitRingLayout.DescBytes(v.Num), out ulong d) ||
                !mem.TryUserToGpa(v.AvailAddr, opts.Packed ? 4UL : SplitRingLayout.AvailBytes(v.Num), out ulong a) ||
                !mem.TryUserToGpa(v.UsedAddr, opts.Packed ? 4UL : SplitRingLayout.UsedBytes(v.Num), out ulong u))
            {
                Fail(v, $"vring {v.Index} addresses desc 0x{v.DescAddr:x} avail 0x{v.AvailAddr:x} used 0x{v.UsedAddr:x} are outside every memory region");
                return;
            }
            layout = new SplitRingLayout(v.Num, d, a, u, opts.EventIdx, RingEndian.Little);
        }
        var q = new DeviceQueue<DeviceMemory<TranslatorRef, RamPort>>(new(new TranslatorRef(translator), new RamPort(mem.Memory)), layout, opts);
        var st = q.CheckRings();
        if (st != MemStatus.Ok) { Fail(v, $"vring {v.Index} rings are not accessible: {st.Describe()}"); return; }
        if (opts.Packed)
        {
            ServePacked(v, q);
            return;
        }
        if (v.Inflight is not null && v.Num != _inflightQueueSize) { Fail(v, InflightSizeMismatch(v)); return; }
        if (q.Memory.LoadU16Acquire(layout.UsedIdxAddr, out ushort usedIdx) != MemStatus.Ok) { Fail(v, $"vring {v.Index}: cannot read used idx"); return; }
        ushort nextAvail = (ushort)v.Base;
        bool signalAtStart = false;
        if (v.Inflight is { } inf)
        {
            if (inf.IsInitialized)
            {
                var heads = inf.Recover(usedIdx);
                // libvhost-user's rule: what was popped is used + still in flight.
                nextAvail = (ushort)(usedIdx + heads.Count);
                q.Resubmit(heads);
                if (heads.Count > 0) _log.LogInformation("vring {Index}: resubmitting {Count} in-flight requests after reconnect", v.Index, heads.Count);
                Interlocked.Add(ref _stats.Resubmitted, heads.Count);
                // The previous back-end may have died between publishing used entries and signalling them; if the
                // driver has nothing else in flight, no later completion would interrupt it. One spurious interrupt
                // is harmless (the driver finds nothing new), a lost one hangs the guest.
                if (usedIdx != 0) signalAtStart = true;
            }
            else inf.Initialize(usedIdx);
            q.Inflight = inf;
        }
        q.SetBase(nextAvail, usedIdx);
        StartServing(v, q, $"base {nextAvail}, used {usedIdx}", signalAtStart);
    }

    /// <summary>
    /// Packed rings keep no used index in guest memory, and after a crash QEMU 7.2 can only resend the base of the
    /// previous start, so with an inflight region the region, not SET_VRING_BASE, says where the ring stands.
    /// </summary>
    private void ServePacked(Vring v, DeviceQueue<DeviceMemory<TranslatorRef, RamPort>> q)
    {
        try { q.SetPackedBase(v.Base); }
        catch (ArgumentOutOfRangeException e) { Fail(v, $"vring {v.Index}: {e.Message}"); return; }
        if (v.PackedInflight is not { } inf)
        {
            StartServing(v, q, $"packed base 0x{v.Base:x8}", false);
            return;
        }
        if (v.Num != _inflightQueueSize) { Fail(v, InflightSizeMismatch(v)); return; }
        if (!inf.IsInitialized)
        {
            inf.Initialize(q.NextUsed, q.UsedWrapCounter);
            q.PackedInflight = inf;
            StartServing(v, q, $"packed base 0x{v.Base:x8}", false);
            return;
        }
        var ringMem = q.Memory;
        ulong desc = q.Layout.Desc;
        int nextUsed;
        bool usedWrap;
        List<RecordedChain> chains;
        try
        {
            (nextUsed, usedWrap, chains) = inf.Recover(slot =>
                ringMem.LoadU16Acquire(desc + (ulong)slot * PackedDesc.Size + PackedDesc.FlagsOffset, out ushort f) == MemStatus.Ok ? PackedRing.Le(f) : null);
            q.RestorePacked(nextUsed, usedWrap, chains);
        }
        catch (Exception e) when (e is InvalidDataException or ArgumentException)
        {
            Fail(v, $"vring {v.Index}: packed inflight region cannot be recovered: {e.Message}");
            return;
        }
        q.PackedInflight = inf;
        if (chains.Count > 0) _log.LogInformation("vring {Index}: resubmitting {Count} in-flight requests after reconnect", v.Index, chains.Count);
        Interlocked.Add(ref _stats.Resubmitted, chains.Count);
        // As for split rings: a used descriptor may have been published but never signalled before the crash.
        StartServing(v, q, $"packed base 0x{q.PackedBase:x8} from the inflight region (front-end sent 0x{v.Base:x8})", nextUsed != 0 || !usedWrap);
    }

    private string InflightSizeMismatch(Vring v) =>
        $"vring {v.Index} has {v.Num} entries but the inflight region was made for queues of {_inflightQueueSize}";

    private void StartServing(Vring v, DeviceQueue<DeviceMemory<TranslatorRef, RamPort>> q, string position, bool signalAtStart)
    {
        v.Queue = q;
        _liveQueues[v.Index] = q;
        _device.Activate(new DeviceContext<DeviceMemory<TranslatorRef, RamPort>>(_features, _liveQueues, i => { Interlocked.Increment(ref _stats.Interrupts); _vrings[i].SignalCall(); }, why => Fail(_vrings[v.Index], why)));
        _log.LogInformation("vring {Index} started: {Layout} size {Num}, {Position}, {Space}", v.Index, q.IsPacked ? "packed" : "split", v.Num, position, AccessPlatform ? "IOVA via IOTLB" : "guest-physical");
        if (signalAtStart) { Interlocked.Increment(ref _stats.Interrupts); v.SignalCall(); }
        do
        {
            Interlocked.Increment(ref _stats.Kicks);
            _device.QueueNotify(v.Index);
            if (q.IsBroken) { Fail(v, $"vring {v.Index}: {q.Error}: {q.ErrorDetail}"); return; }
        } while (v.WaitKick());
    }

    private void Fail(Vring v, string why)
    {
        _log.LogError("{Reason}: the device needs a reset", why);
        _status |= (byte)DeviceStatus.DeviceNeedsReset;
        v.Err?.Signal();
    }

    private void ResetDevice()
    {
        // The inflight region described the old device; after a reset the front-end sends a new one (QEMU does).
        foreach (var v in _vrings) { StopRing(v); v.Base = 0; v.Enabled = false; v.Inflight = null; v.PackedInflight = null; }
        _device.Reset();
        _features = 0;
        _featuresSet = false;
        _status = 0;
        _iotlb.Clear();
    }

    private void Reply(VhostRequest req, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        Reply(req, b);
    }

    private void Reply(VhostRequest req, ReadOnlySpan<byte> body, ReadOnlySpan<SafeFd> fds = default)
    {
        var m = new byte[VhostHeader.Length + body.Length];
        new VhostHeader((uint)req, VhostHeader.Version | VhostHeader.ReplyFlag, (uint)body.Length).Write(m);
        body.CopyTo(m.AsSpan(VhostHeader.Length));
        _sock.Send(m, fds);
    }

    /// <summary>Ends the connection from another thread: the message loop sees EOF and returns.</summary>
    public void Abort() => _sock.Shutdown();

    public (long Hits, long Misses, long Updates, long Invalidations) IotlbCounters =>
        (Interlocked.Read(ref _iotlb.Hits), Interlocked.Read(ref _iotlb.Misses), Interlocked.Read(ref _iotlb.Updates), Interlocked.Read(ref _iotlb.Invalidations));

    /// <summary>Stops every ring and releases everything the connection held; the inflight memfd is kept by QEMU.</summary>
    public void Dispose()
    {
        foreach (var v in _vrings) v.Dispose();
        _device.Reset();
        _memory?.Dispose();
        foreach (var (_, fd) in _regionFds) fd.Dispose();
        _regionFds.Clear();
        lock (_backendLock) _backendChannel?.Dispose();
        _inflightMap?.Dispose();
        _inflightFd?.Dispose();
        _sock.Dispose();
    }
}
