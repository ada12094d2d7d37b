using System.Buffers.Binary;
using Microsoft.Extensions.Logging;
using VirtioSharp.Devices;
using VirtioSharp.Host;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// The state of one vhost-user connection and what each message does to it. Status, features and activation are the
/// shared <see cref="VirtioDeviceHost{TMem}"/>'s: SET_FEATURES negotiates through it (the device may refuse), a ring
/// start activates the device, SET_STATUS writes the same status machine. Memory, inflight region, IOTLB, back-end
/// channel and ring recovery each live in their own type; this class wires them to the messages. Every message is
/// validated before it changes anything; a malformed one ends the connection with a log line that names it.
/// </summary>
public sealed class VhostUserBackend : IDeviceHostTransport<DeviceMemory<TranslatorRef, RamPort>>, IDisposable
{
    /// <summary>Regions at most (GET_MAX_MEM_SLOTS).</summary>
    public const int MaxMemSlots = VhostMemoryState.MaxMemSlots;
    /// <summary>Regions in one SET_MEM_TABLE.</summary>
    public const int BaselineRegions = VhostMemoryState.BaselineRegions;
    private const ulong ProtocolFeaturesBit = 1UL << VhostHeader.ProtocolFeaturesBit;

    private readonly FdSocket _sock;
    private readonly IVirtioDevice<DeviceMemory<TranslatorRef, RamPort>> _device;
    private readonly VirtioDeviceHost<DeviceMemory<TranslatorRef, RamPort>> _host;
    private readonly ILogger _log;
    private readonly VhostStats _stats;
    private readonly Vring[] _vrings;
    private readonly VhostMemoryState _memory = new();
    private readonly VhostInflightState _inflight = new();
    private readonly BackendChannel _channel;
    private readonly VhostIotlb _iotlb;
    private ulong _features;
    private ulong _protocolFeatures;
    private bool _featuresSet;

    internal VhostUserBackend(FdSocket socket, IVirtioDevice<DeviceMemory<TranslatorRef, RamPort>> device, ILogger log, VhostStats stats)
    {
        _sock = socket;
        _device = device;
        _log = log;
        _stats = stats;
        _vrings = Enumerable.Range(0, device.QueueCount).Select(i => new Vring(i)).ToArray();
        _channel = new BackendChannel(log);
        _iotlb = new VhostIotlb(() => _memory.Table)
        {
            RequestMiss = (iova, perm) => _channel.SendIotlb(IotlbMsgType.Miss, iova, perm),
            ReportAccessFail = (iova, perm) => _channel.SendIotlb(IotlbMsgType.AccessFail, iova, perm),
        };
        _host = new VirtioDeviceHost<DeviceMemory<TranslatorRef, RamPort>>(device, this);
    }

    /// <summary>GET_FEATURES: the device's features and VHOST_USER_F_PROTOCOL_FEATURES.</summary>
    public ulong OfferedFeatures => _device.DeviceFeatures | ProtocolFeaturesBit;

    /// <summary>GET_PROTOCOL_FEATURES for <paramref name="device"/>: config space only where it has one, inflight tracking only where requests can be resubmitted.</summary>
    public static ulong ProtocolFeaturesFor<TMem>(IVirtioDevice<TMem> device) where TMem : struct, IDeviceMemory
    {
        ulong f = Bit(VhostProtocolFeature.Mq) | Bit(VhostProtocolFeature.ReplyAck) | Bit(VhostProtocolFeature.BackendReq) |
                  Bit(VhostProtocolFeature.ResetDevice) | Bit(VhostProtocolFeature.ConfigureMemSlots) | Bit(VhostProtocolFeature.Status) |
                  Bit(VhostProtocolFeature.BackendSendFd);
        if (device.ConfigSize > 0) f |= Bit(VhostProtocolFeature.Config);
        if (device.Capabilities.HasFlag(DeviceCapabilities.Resubmit)) f |= Bit(VhostProtocolFeature.InflightShmfd);
        return f;
    }

    /// <summary>This connection's GET_PROTOCOL_FEATURES answer.</summary>
    public ulong OfferedProtocolFeatures => ProtocolFeaturesFor(_device);

    /// <summary>The status/feature/activation machine this connection drives.</summary>
    public VirtioDeviceHost<DeviceMemory<TranslatorRef, RamPort>> Host => _host;

    private static ulong Bit(int b) => 1UL << b;
    private bool Has(int protocolBit) => (_protocolFeatures & Bit(protocolBit)) != 0;
    private bool Packed => VirtioFeature.Has(_features, VirtioFeature.RingPacked);

    internal VhostIotlb Iotlb => _iotlb;

    /// <summary>Serves messages until the front-end disconnects or breaks the protocol.</summary>
    public void Run() => new VhostMessageLoop(_sock, _log, _stats).Run(Dispatch, req => { if (Has(VhostProtocolFeature.ReplyAck)) Reply(req, 0UL); });

    private Vring Ring(VhostRequest req, uint index)
    {
        if (index >= _vrings.Length)
            throw new VhostProtocolException($"{req}: vring index {index} is out of range (the device has {_vrings.Length} queues)");
        return _vrings[index];
    }

    /// <summary>Handles one message; returns true if it sent a reply itself.</summary>
    private bool Dispatch(in VhostMessage m)
    {
        var req = m.Request;
        var r = m.Reader();
        switch (req)
        {
            case VhostRequest.GetFeatures: Reply(req, OfferedFeatures); return true;
            case VhostRequest.SetFeatures: SetFeatures(r.U64()); return false;
            case VhostRequest.SetOwner: return false;
            case VhostRequest.ResetOwner:
            case VhostRequest.ResetDevice: ResetDevice(); return false;
            case VhostRequest.GetProtocolFeatures: Reply(req, OfferedProtocolFeatures); return true;
            case VhostRequest.SetProtocolFeatures:
            {
                ulong f = r.U64();
                if ((f & ~OfferedProtocolFeatures) != 0) throw new VhostProtocolException($"{req}: unknown protocol features 0x{f & ~OfferedProtocolFeatures:x}");
                _protocolFeatures = f;
                return false;
            }
            case VhostRequest.GetQueueNum: Reply(req, (ulong)_vrings.Length); return true;
            case VhostRequest.GetMaxMemSlots: Reply(req, (ulong)MaxMemSlots); return true;
            case VhostRequest.SetMemTable:
            {
                uint n = r.U32();
                r.U32();
                if (n == 0 || n > BaselineRegions) throw new VhostProtocolException($"SET_MEM_TABLE: {n} regions (1..{BaselineRegions} allowed)");
                var regions = new List<VhostMemoryRegion>();
                for (int i = 0; i < n; i++) regions.Add(VhostMemoryRegion.Parse(r.Bytes(VhostMemoryRegion.Length)));
                m.ExpectFds((int)n);
                var fds = new List<SafeFd>();
                for (int i = 0; i < n; i++) fds.Add(m.Fd(i));
                var pending = _memory.SetTable(regions, fds);
                foreach (var fd in fds) m.Keep(fd);
                SwapMemory(pending);
                return false;
            }
            case VhostRequest.AddMemReg:
            {
                m.ExpectFds(1);
                r.U64();
                var pending = _memory.Add(VhostMemoryRegion.Parse(r.Bytes(VhostMemoryRegion.Length)), m.Fd(0));
                m.Keep(m.Fd(0));
                SwapMemory(pending);
                return false;
            }
            case VhostRequest.RemMemReg:
            {
                r.U64();
                SwapMemory(_memory.Remove(VhostMemoryRegion.Parse(r.Bytes(VhostMemoryRegion.Length))));
                return false;
            }
            case VhostRequest.SetVringNum:
            {
                var v = Ring(req, r.U32());
                uint num = r.U32();
                if (!SplitRingLayout.IsValidSize((int)num, Packed) || num > _device.MaxQueueSize)
                    throw new VhostProtocolException($"{req}: vring {v.Index} size {num} is not {(Packed ? "a size" : "a power of two")} in 1..{_device.MaxQueueSize}");
                ExpectStopped(req, v);
                v.Num = (ushort)num;
                return false;
            }
            case VhostRequest.SetVringAddr:
            {
                var v = Ring(req, r.U32());
                r.U32();   // flags: logging is not offered
                ulong desc = r.U64(), used = r.U64(), avail = r.U64();
                r.U64();
                ExpectStopped(req, v);
                (v.DescAddr, v.UsedAddr, v.AvailAddr, v.AddrSet) = (desc, used, avail, true);
                return false;
            }
            case VhostRequest.SetVringBase:
            {
                var v = Ring(req, r.U32());
                uint num = r.U32();
                // Packed rings carry both indexes and wrap counters in the 32 bits (QEMU 7.2 encoding).
                if (!Packed && num > 0xFFFF) throw new VhostProtocolException($"{req}: split vring base {num} does not fit 16 bits");
                ExpectStopped(req, v);
                v.Base = num;
                return false;
            }
            case VhostRequest.GetVringBase: GetVringBase(Ring(req, r.U32())); return true;
            case VhostRequest.SetVringKick:
            case VhostRequest.SetVringCall:
            case VhostRequest.SetVringErr: SetVringFd(m, r.U64()); return false;
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
                m.ExpectFds(1);
                _channel.Set(new FdSocket(m.Keep(m.Fd(0))));
                return false;
            case VhostRequest.IotlbMsg: HandleIotlb(ref r); return false;
            case VhostRequest.GetConfig: GetConfig(ref r); return true;
            case VhostRequest.SetConfig:
            {
                uint offset = r.U32(), size = r.U32();
                r.U32();
                if (size > 256 || r.Remaining < size || offset + size > (uint)_device.ConfigSize)
                    throw new VhostProtocolException($"{req}: write of {size} bytes at {offset} is outside the {_device.ConfigSize}-byte config");
                _host.WriteConfig((int)offset, r.Bytes((int)size));
                return false;
            }
            case VhostRequest.GetInflightFd: GetInflightFd(ref r); return true;
            case VhostRequest.SetInflightFd: SetInflightFd(ref r, m); return false;
            case VhostRequest.SetStatus:
            {
                ulong s = r.U64();
                if (s > 0xFF) throw new VhostProtocolException($"{req}: status 0x{s:x} does not fit a byte");
                if (s == 0) ResetDevice();
                else _host.WriteStatus((DeviceStatus)(byte)s);
                return false;
            }
            case VhostRequest.GetStatus: Reply(req, (ulong)_host.Status); return true;
            default:
                throw new VhostProtocolException($"unsupported request {req} ({m.Header.Request})");
        }
    }

    private void SetFeatures(ulong f)
    {
        ulong unknown = f & ~OfferedFeatures;
        if (unknown != 0) throw new VhostProtocolException($"SetFeatures: front-end acked features never offered: {VirtioFeature.Describe(unknown, _device.DeviceId)}");
        ulong features = f & ~ProtocolFeaturesBit;
        if (_vrings.Any(v => v.Started))
        {
            if (features == _features) return;
            throw new VhostProtocolException($"SetFeatures: features changed while rings run ({VirtioFeature.Describe(_features ^ features, _device.DeviceId)}): stop the rings first");
        }
        if (!_host.NegotiateFeatures(features, out var why))
            throw new VhostProtocolException($"SetFeatures: the device refused {VirtioFeature.Describe(features, _device.DeviceId)}: {why}");
        _features = features;
        _featuresSet = true;
        _log.LogInformation("features: {Features}", VirtioFeature.Describe(_features, _device.DeviceId));
        // Without PROTOCOL_FEATURES rings are enabled as soon as they have a kick fd.
        if ((f & ProtocolFeaturesBit) == 0) foreach (var v in _vrings) v.Enabled = true;
    }

    private void SetVringFd(in VhostMessage m, ulong u)
    {
        var req = m.Request;
        var v = Ring(req, (uint)(u & 0xFF));
        bool noFd = (u & 0x100) != 0;
        if ((u & ~0x1FFUL) != 0) throw new VhostProtocolException($"{req}: reserved bits set in 0x{u:x}");
        m.ExpectFds(noFd ? 0 : 1);
        if (noFd && req == VhostRequest.SetVringKick) throw new VhostProtocolException($"{req}: polling mode (no kick fd) is not supported");
        var ev = noFd ? null : new EventFd(m.Keep(m.Fd(0)));
        if (req == VhostRequest.SetVringKick)
        {
            StopRing(v);
            v.Kick?.Dispose();
            v.Kick = ev;
            TryStart(v);
        }
        else if (req == VhostRequest.SetVringCall) { var old = v.Call; v.Call = ev; old?.Dispose(); }
        else { var old = v.Err; v.Err = ev; old?.Dispose(); }
    }

    private void GetVringBase(Vring v)
    {
        if (!v.Started && !v.EverStarted) _log.LogWarning("GET_VRING_BASE for vring {Index}, which was never started: answering its base {Base}", v.Index, v.Base);
        StopRing(v);
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)v.Index);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], v.Base);
        Reply(VhostRequest.GetVringBase, b);
        // GET_VRING_BASE also stops the ring for good until a new kick fd arrives.
        v.Kick?.Dispose();
        v.Kick = null;
    }

    private void GetConfig(ref PayloadReader r)
    {
        uint offset = r.U32(), size = r.U32(), flags = r.U32();
        if (size > 256 || offset > 256 || r.Remaining < size)
            throw new VhostProtocolException($"GetConfig: offset {offset} size {size} with {r.Remaining} payload bytes");
        var reply = new byte[12 + size];
        BinaryPrimitives.WriteUInt32LittleEndian(reply, offset);
        BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(4), size);
        BinaryPrimitives.WriteUInt32LittleEndian(reply.AsSpan(8), flags);
        // Bytes past the device's config read as zero; QEMU wants exactly the size it asked for.
        int avail = Math.Max(0, Math.Min((int)size, _device.ConfigSize - (int)offset));
        if (avail > 0) _host.ReadConfig((int)offset, reply.AsSpan(12, avail));
        Reply(VhostRequest.GetConfig, reply);
    }

    // The running workers hold pointers into the current memory: it changes only with every ring paused.
    private void SwapMemory(VhostMemoryState.Pending pending)
    {
        var running = _vrings.Where(v => v.Started).ToList();
        foreach (var v in running) StopRing(v);
        _memory.Swap(pending);
        foreach (var v in running) TryStart(v);
        _log.LogInformation("memory table: {Regions}", _memory.Describe());
    }

    private void HandleIotlb(ref PayloadReader r)
    {
        ulong iova = r.U64(), size = r.U64(), uaddr = r.U64();
        byte perm = r.U8(), type = r.U8();
        _log.LogDebug("IOTLB {Type} iova 0x{Iova:x} size 0x{Size:x} uaddr 0x{Uaddr:x} perm {Perm}", type == IotlbMsgType.Update ? "UPDATE" : "INVALIDATE", iova, size, uaddr, perm);
        switch (type)
        {
            case IotlbMsgType.Update: _iotlb.Update(iova, size, uaddr, perm); break;
            case IotlbMsgType.Invalidate: _iotlb.Invalidate(iova, size); break;
            default: throw new VhostProtocolException($"IOTLB_MSG: type {type} is not UPDATE or INVALIDATE");
        }
    }

    private void ExpectStopped(VhostRequest req, Vring v)
    {
        if (v.Started) throw new VhostProtocolException($"{req}: vring {v.Index} is running");
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
        // QEMU sends SET_FEATURES before this message, so the ring layout (and with it the region layout) is known.
        var (fd, size) = _inflight.Create(_vrings.Length, queues, queueSize, _device.MaxQueueSize, Packed);
        // struct VhostUserInflight is 20 bytes of fields padded to 24; QEMU checks the padded size.
        Span<byte> b = stackalloc byte[24];
        b.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(b, size);
        BinaryPrimitives.WriteUInt16LittleEndian(b[16..], queues);
        BinaryPrimitives.WriteUInt16LittleEndian(b[18..], queueSize);
        Reply(VhostRequest.GetInflightFd, b, [fd]);
    }

    private void SetInflightFd(ref PayloadReader r, in VhostMessage m)
    {
        ulong size = r.U64(), offset = r.U64();
        ushort queues = r.U16(), queueSize = r.U16();
        m.ExpectFds(1);
        ExpectRingsStopped(VhostRequest.SetInflightFd);
        _inflight.Restore(m.Fd(0), size, offset, _vrings.Length, queues, queueSize, _device.MaxQueueSize, Packed);
        m.Keep(m.Fd(0));
        _log.LogInformation("inflight region restored: {Queues} queues of {Size}", queues, queueSize);
    }

    private void TryStart(Vring v)
    {
        if (v.Started || v.Kick is null || !v.Enabled || !v.AddrSet || v.Num == 0 || _memory.Table is not { } mem || !_featuresSet) return;
        if (_host.NeedsResetReason is not null) return;
        var q = VringRecovery.Prepare(v, mem, _features, _iotlb, _inflight, _log, _stats, out bool signalAtStart, out string position, out string? failure);
        if (q is null) { Fail(v.Index, failure!); return; }
        if (_host.StartQueue(v.Index, q) is null) { Fail(v.Index, $"vring {v.Index}: the device could not be activated"); return; }
        _log.LogInformation("vring {Index} started: {Layout} size {Num}, {Position}, {Space}", v.Index, q.IsPacked ? "packed" : "split", v.Num, position,
            VirtioFeature.Has(_features, VirtioFeature.AccessPlatform) ? "IOVA via IOTLB" : "guest-physical");
        if (signalAtStart) Interlocked.Increment(ref _stats.Interrupts);
        v.Start(_host, q, signalAtStart, _log);
    }

    private void StopRing(Vring v)
    {
        if (!v.Started) return;
        v.Stop();
        if (v.Queue is { } q) v.Base = q.IsPacked ? q.PackedBase : q.NextAvail;
        _host.StopQueue(v.Index);
        v.Queue = null;
        Interlocked.Add(ref _stats.Kicks, Interlocked.Exchange(ref v.Kicks, 0));
    }

    private void Fail(int queue, string why) => _host.SetNeedsReset(why, queue);

    private void ResetDevice()
    {
        foreach (var v in _vrings) { StopRing(v); v.Base = 0; v.Enabled = false; }
        // The inflight region described the old device; after a reset the front-end sends a new one (QEMU does).
        _inflight.Forget();
        _host.Reset();
        _features = 0;
        _featuresSet = false;
        _iotlb.Clear();
    }

    DeviceQueue<DeviceMemory<TranslatorRef, RamPort>>?[]? IDeviceHostTransport<DeviceMemory<TranslatorRef, RamPort>>.CreateQueues(ulong features, out string? failure)
    {
        // Rings start one by one (StartQueue); at activation none need be running yet.
        failure = null;
        return new DeviceQueue<DeviceMemory<TranslatorRef, RamPort>>?[_vrings.Length];
    }

    void IDeviceHostTransport<DeviceMemory<TranslatorRef, RamPort>>.Interrupt(int queue)
    {
        Interlocked.Increment(ref _stats.Interrupts);
        _vrings[queue].SignalCall();
    }

    void IDeviceHostTransport<DeviceMemory<TranslatorRef, RamPort>>.ConfigInterrupt()
    {
        if (Has(VhostProtocolFeature.BackendReq) && Has(VhostProtocolFeature.Config) && _channel.SendConfigChange())
            Interlocked.Increment(ref _stats.ConfigChanges);
    }

    void IDeviceHostTransport<DeviceMemory<TranslatorRef, RamPort>>.NeedsReset(string reason, int queue)
    {
        _log.LogError("{Reason}: the device needs a reset", reason);
        // vhost-user has no status interrupt: the error eventfd tells the front-end.
        if ((uint)queue < (uint)_vrings.Length) _vrings[queue].Err?.Signal();
        else foreach (var v in _vrings) v.Err?.Signal();
    }

    void IDeviceHostTransport<DeviceMemory<TranslatorRef, RamPort>>.Wake(int queue) => _vrings[queue].Wake();

    bool IDeviceHostTransport<DeviceMemory<TranslatorRef, RamPort>>.PollsEventSources => true;

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

    /// <summary>This connection's IOTLB counters.</summary>
    public (long Hits, long Misses, long Updates, long Invalidations) IotlbCounters =>
        (Interlocked.Read(ref _iotlb.Hits), Interlocked.Read(ref _iotlb.Misses), Interlocked.Read(ref _iotlb.Updates), Interlocked.Read(ref _iotlb.Invalidations));

    /// <summary>Stops every ring, resets the device and releases everything the connection held; the inflight memfd is kept by QEMU.</summary>
    public void Dispose()
    {
        foreach (var v in _vrings) StopRing(v);
        _host.Reset();
        foreach (var v in _vrings) v.Dispose();
        _memory.Dispose();
        _channel.Dispose();
        _inflight.Dispose();
        _sock.Dispose();
    }
}
