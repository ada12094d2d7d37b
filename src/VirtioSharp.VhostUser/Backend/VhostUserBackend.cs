using System.Diagnostics;
using System.Buffers.Binary;
using Microsoft.Extensions.Logging;
using VirtioSharp.Devices;
using VirtioSharp.Devices.Net;
using VirtioSharp.Host;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Interop;
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
public sealed class VhostUserBackend : IDisposable
{
    /// <summary>Regions at most (GET_MAX_MEM_SLOTS).</summary>
    public const int MaxMemSlots = VhostMemoryState.MaxMemSlots;
    /// <summary>Regions in one SET_MEM_TABLE.</summary>
    public const int BaselineRegions = VhostMemoryState.BaselineRegions;
    private const ulong ProtocolFeaturesBit = 1UL << VhostHeader.ProtocolFeaturesBit;
    private const ulong LogAllBit = 1UL << VhostHeader.LogAllBit;
    private const uint VringFlagLog = 1;   // VHOST_VRING_F_LOG

    private readonly FdSocket _sock;
    private readonly IVirtioDevice<DeviceMemory<TranslatorRef, RamPort>> _device;
    private readonly VirtioDeviceHost<DeviceMemory<TranslatorRef, RamPort>> _host;
    private readonly ILogger _log;
    private readonly VhostStats _stats;
    private readonly Vring[] _vrings;
    private readonly VhostMemoryState _memory;
    private readonly VhostUserBackendOptions _options;
    private readonly long _pollTicks;   // PollTime in Stopwatch ticks
    private readonly VhostInflightState _inflight = new();
    private readonly BackendChannel _channel;
    private readonly VhostIotlb _iotlb;
    private readonly VhostLogState _dirtyLog;
    private ulong _features;
    private bool _logAll;
    private ulong _protocolFeatures;
    private bool _featuresSet;

    internal VhostUserBackend(FdSocket socket, IVirtioDevice<DeviceMemory<TranslatorRef, RamPort>> device, ILogger log, VhostStats stats, VhostUserBackendOptions? options = null)
    {
        _options = options ?? VhostUserBackendOptions.Default;
        _pollTicks = (long)(_options.PollTime.TotalSeconds * Stopwatch.Frequency);
        _memory = new VhostMemoryState(_options.AllowUnsealedMemory, _options.MaxGuestMemoryBytes, log);
        _dirtyLog = new VhostLogState(_options.AllowUnsealedMemory, _options.InjectNoDirtyLog, log);
        _sock = socket;
        _device = device;
        _log = log;
        _stats = stats;
        _vrings = Enumerable.Range(0, device.QueueCount).Select(i => new Vring(i)).ToArray();
        _channel = new BackendChannel(log, VhostUserBackendOptions.Milliseconds(_options.BackendChannelTimeout));
        _iotlb = new VhostIotlb(() => _memory.Table)
        {
            RequestMiss = (iova, perm) => _channel.SendIotlb(IotlbMsgType.Miss, iova, perm),
            ReportAccessFail = (iova, perm) => _channel.SendIotlb(IotlbMsgType.AccessFail, iova, perm),
            MissTimeoutMs = VhostUserBackendOptions.Milliseconds(_options.IotlbMissTimeout),
        };
        foreach (var v in _vrings) v.Interrupt = _iotlb.WakeWaiters;
        _host = new VirtioDeviceHost<DeviceMemory<TranslatorRef, RamPort>>(device, new VhostDeviceTransport(_vrings, stats, _channel, () => _protocolFeatures, log));
    }

    /// <summary>
    /// GET_FEATURES: the device's features, VHOST_USER_F_PROTOCOL_FEATURES and VHOST_F_LOG_ALL (every write a device
    /// makes goes through its address space, which logs it: any device can migrate).
    /// </summary>
    public ulong OfferedFeatures => _device.DeviceFeatures | ProtocolFeaturesBit | LogAllBit;

    /// <summary>
    /// GET_PROTOCOL_FEATURES for <paramref name="device"/>: config space only where it has one, inflight tracking only
    /// where requests can be resubmitted, RARP only where the device can announce a guest (<see cref="IRarpAnnouncer"/>).
    /// </summary>
    public static ulong ProtocolFeaturesFor<TMem>(IVirtioDevice<TMem> device) where TMem : struct, IDeviceMemory
    {
        ulong f = Bit(VhostProtocolFeature.Mq) | Bit(VhostProtocolFeature.ReplyAck) | Bit(VhostProtocolFeature.BackendReq) |
                  Bit(VhostProtocolFeature.ResetDevice) | Bit(VhostProtocolFeature.ConfigureMemSlots) | Bit(VhostProtocolFeature.Status) |
                  Bit(VhostProtocolFeature.BackendSendFd) | Bit(VhostProtocolFeature.LogShmfd);
        if (device.ConfigSize > 0) f |= Bit(VhostProtocolFeature.Config);
        if (device.Capabilities.HasFlag(DeviceCapabilities.Resubmit)) f |= Bit(VhostProtocolFeature.InflightShmfd);
        if (device is IRarpAnnouncer) f |= Bit(VhostProtocolFeature.Rarp);
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

    /// <summary>This connection's dirty-page log (live migration).</summary>
    public DirtyLog DirtyLog => _dirtyLog.Log;

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
            case VhostRequest.SetMemTable: SwapMemory(_memory.SetTable(ref r, m)); return false;
            case VhostRequest.AddMemReg:
                if (_memory.Add(ref r, m) is { } added) SwapMemory(added);
                else _log.LogDebug("ADD_MEM_REG of a region already mapped: nothing to do");
                return false;
            case VhostRequest.RemMemReg:
                if (_memory.Remove(ref r) is { } removed) SwapMemory(removed);
                else _log.LogDebug("REM_MEM_REG of a region not mapped: nothing to do");
                return false;
            case VhostRequest.SetVringNum:
            {
                var (index, num) = VringState.Parse(ref r);
                var v = Ring(req, index);
                if (!SplitRingLayout.IsValidSize((int)num, Packed) || num > _device.MaxQueueSize)
                    throw new VhostProtocolException($"{req}: vring {v.Index} size {num} is not {(Packed ? "a size" : "a power of two")} in 1..{_device.MaxQueueSize}");
                ExpectStopped(req, v);
                v.Num = (ushort)num;
                return false;
            }
            case VhostRequest.SetVringAddr: SetVringAddr(VringAddress.Parse(ref r)); return false;
            case VhostRequest.SetLogBase: SetLogBase(LogDescription.Parse(ref r), m); return true;
            case VhostRequest.SetLogFd:
                m.ExpectFds(1);
                PeerFd.RequireEventFd(m.Fd(0), "SET_LOG_FD");
                _dirtyLog.SetLogFd(new EventFd(m.Keep(m.Fd(0))));
                return false;
            case VhostRequest.SetVringBase:
            {
                var (index, num) = VringState.Parse(ref r);
                var v = Ring(req, index);
                // Packed rings carry both indexes and wrap counters in the 32 bits (QEMU 7.2 encoding).
                if (!Packed && num > 0xFFFF) throw new VhostProtocolException($"{req}: split vring base {num} does not fit 16 bits");
                ExpectStopped(req, v);
                v.Base = num;
                return false;
            }
            case VhostRequest.GetVringBase: GetVringBase(Ring(req, VringState.Parse(ref r).Index)); return true;
            case VhostRequest.SetVringKick:
            case VhostRequest.SetVringCall:
            case VhostRequest.SetVringErr: SetVringFd(m, VringFile.Parse(ref r, req)); return false;
            case VhostRequest.SetVringEnable:
            {
                var (index, on) = VringState.Parse(ref r);
                var v = Ring(req, index);
                if (on > 1) throw new VhostProtocolException($"{req}: value {on} is not 0 or 1");
                v.Enabled = on == 1;
                if (v.Enabled) TryStart(v); else StopRing(v);
                return false;
            }
            case VhostRequest.SetBackendReqFd:
                m.ExpectFds(1);
                PeerFd.RequireConnectedStreamSocket(m.Fd(0), "SET_BACKEND_REQ_FD");
                _channel.Set(new FdSocket(m.Keep(m.Fd(0))));
                return false;
            case VhostRequest.IotlbMsg: HandleIotlb(ref r); return false;
            case VhostRequest.GetConfig: GetConfig(ref r); return true;
            case VhostRequest.SetConfig:
            {
                var c = ConfigRequest.Parse(ref r, req);
                if ((ulong)c.Offset + c.Size > (uint)_device.ConfigSize)
                    throw new VhostProtocolException($"{req}: write of {c.Size} bytes at {c.Offset} is outside the {_device.ConfigSize}-byte config");
                _host.WriteConfig((int)c.Offset, r.Bytes((int)c.Size));
                return false;
            }
            case VhostRequest.GetInflightFd: GetInflightFd(ref r); return true;
            case VhostRequest.SetInflightFd: SetInflightFd(ref r, m); return false;
            case VhostRequest.SetStatus:
            {
                ulong s = r.U64();
                if (s > 0xFF) throw new VhostProtocolException($"{req}: status 0x{s:x} does not fit a byte");
                if (s == 0) ResetDevice(keepRingPositions: true);
                else _host.WriteStatus((DeviceStatus)(byte)s);
                return false;
            }
            case VhostRequest.GetStatus: Reply(req, (ulong)_host.Status); return true;
            case VhostRequest.SendRarp: SendRarp(m); return false;
            default:
                throw new VhostProtocolException($"unsupported request {req} ({m.Header.Request})");
        }
    }

    private void SetFeatures(ulong f)
    {
        ulong unknown = f & ~OfferedFeatures;
        if (unknown != 0) throw new VhostProtocolException($"SetFeatures: front-end acked features never offered: {VirtioFeature.Describe(unknown, _device.DeviceId)}");
        // VHOST_F_LOG_ALL is the transport's, not the device's: the device never sees it.
        bool logAll = (f & LogAllBit) != 0;
        ulong features = f & ~(ProtocolFeaturesBit | LogAllBit);
        if (_vrings.Any(v => v.Started))
        {
            // vhost-user.rst "Migration": the front-end starts and stops logging with SET_FEATURES while the rings run;
            // that toggle is the only change allowed then.
            if (features != _features)
                throw new VhostProtocolException($"SetFeatures: features changed while rings run ({VirtioFeature.Describe(_features ^ features, _device.DeviceId)}): stop the rings first");
            if (logAll != _logAll) SetLogAll(logAll);
            return;
        }
        if (!_host.NegotiateFeatures(features, out var why))
            throw new VhostProtocolException($"SetFeatures: the device refused {VirtioFeature.Describe(features, _device.DeviceId)}: {why}");
        _features = features;
        _featuresSet = true;
        SetLogAll(logAll);
        _log.LogInformation("features: {Features}", VirtioFeature.Describe(_features, _device.DeviceId));
        // Without PROTOCOL_FEATURES rings are enabled as soon as they have a kick fd.
        if ((f & ProtocolFeaturesBit) == 0) foreach (var v in _vrings) v.Enabled = true;
    }

    /// <summary>
    /// SEND_RARP (vhost-user.rst): the migration is done and the guest cannot announce itself, so the back-end
    /// broadcasts a RARP from the guest's MAC (the first 6 bytes of the u64) and the network learns its new path.
    /// </summary>
    private void SendRarp(in VhostMessage m)
    {
        if (!Has(VhostProtocolFeature.Rarp)) throw new VhostProtocolException("SendRarp: VHOST_USER_PROTOCOL_F_RARP was not negotiated");
        m.ExpectFds(0);
        var r = m.Reader();
        if (r.Remaining != sizeof(ulong)) throw new VhostProtocolException($"SendRarp: payload of {r.Remaining} bytes, expected 8 (a u64 holding the MAC address)");
        Span<byte> mac = stackalloc byte[6];
        r.Bytes(6).CopyTo(mac);
        if ((mac[0] & 1) != 0 || !mac.ContainsAnyExcept((byte)0))
            throw new VhostProtocolException($"SendRarp: {Convert.ToHexString(mac)} is not a unicast MAC address");
        bool sent = ((IRarpAnnouncer)_device).BroadcastRarp(mac);
        _log.LogInformation("SEND_RARP: RARP for {Mac} {Outcome}", string.Join(':', mac.ToArray().Select(b => b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture))),
            sent ? "broadcast (the network learns the migrated guest's new path)" : "not sent (link down, or the port dropped it)");
    }

    private void SetLogAll(bool on)
    {
        if (on == _logAll) return;
        _logAll = on;
        // Running rings pause, so that a worker that tested the flag just before it changed cannot write unlogged
        // afterwards: once this returns (and the front-end hears back), every write is logged.
        PauseRunningRings(() => _dirtyLog.SetEnabled(on));
        _log.LogInformation("dirty logging {State} (VHOST_F_LOG_ALL){Injection}", on ? "on" : "off",
            on && _options.InjectNoDirtyLog ? ": FAULT INJECTION, nothing will be logged (--inject-no-dirty-log)" : "");
    }

    private void SetVringAddr(VringAddress a)
    {
        var v = Ring(VhostRequest.SetVringAddr, a.Index);
        if ((a.Flags & ~VringFlagLog) != 0)
            throw new VhostProtocolException($"SetVringAddr: vring {v.Index} flags 0x{a.Flags:x}: only VHOST_VRING_F_LOG (0x1) is defined");
        bool logUsed = (a.Flags & VringFlagLog) != 0;
        // The front-end turns used-ring logging on and off with the same addresses while the ring runs; new addresses
        // need a stopped ring.
        if (v.Started && (a.Desc, a.Used, a.Avail) != (v.DescAddr, v.UsedAddr, v.AvailAddr))
            throw new VhostProtocolException($"SetVringAddr: vring {v.Index} is running: only VHOST_VRING_F_LOG may change now, not the ring addresses");
        (v.DescAddr, v.UsedAddr, v.AvailAddr, v.AddrSet) = (a.Desc, a.Used, a.Avail, true);
        (v.LogUsed, v.LogGuestAddr) = (logUsed, a.Log);
        // Used-ring writes are logged at the guest-physical address they reach (through the IOTLB under a vIOMMU, as the
        // kernel's vhost does). QEMU gives that same address as log_guest_addr; say so if a front-end does not.
        if (logUsed && !VirtioFeature.Has(_features, VirtioFeature.AccessPlatform) && _memory.Table is { } mem &&
            mem.TryUserToGpa(a.Used, 1, out ulong usedGpa) && usedGpa != a.Log)
            _log.LogWarning("SetVringAddr: vring {Index} log_guest_addr 0x{Log:x} is not its used ring's guest-physical address 0x{Gpa:x}, where used-ring writes are logged", v.Index, a.Log, usedGpa);
    }

    private void SetLogBase(LogDescription d, in VhostMessage m)
    {
        // Without LOG_SHMFD the log would live in the front-end's own memory, out of our reach.
        if (!Has(VhostProtocolFeature.LogShmfd)) throw new VhostProtocolException("SetLogBase: VHOST_USER_PROTOCOL_F_LOG_SHMFD was not negotiated");
        m.ExpectFds(1);
        var map = _dirtyLog.Prepare(d, m.Fd(0));
        // The mapping outlives the fd: close it now, before the reply, so that once the front-end hears back we hold no
        // fd of its log (the loop's own close after the handler is then a no-op).
        m.Fd(0).Dispose();
        // QEMU resizes the log while the rings run (guest memory grew): workers must not mark the old one meanwhile.
        PauseRunningRings(() => _dirtyLog.Swap(map, d));
        _log.LogInformation("dirty log: {Size} bytes at offset {Offset} (covers guest-physical addresses below 0x{End:x})", d.Size, d.Offset, d.Size << (DirtyLog.PageShift + 3));
        // vhost-user.rst "Communication": SET_LOG_BASE is answered when LOG_SHMFD is negotiated (QEMU waits for it).
        Reply(VhostRequest.SetLogBase, 0UL);
    }

    private void SetVringFd(in VhostMessage m, VringFile f)
    {
        var req = m.Request;
        var v = Ring(req, f.Index);
        bool noFd = f.NoFd;
        m.ExpectFds(noFd ? 0 : 1);
        if (noFd && req == VhostRequest.SetVringKick) throw new VhostProtocolException($"{req}: polling mode (no kick fd) is not supported");
        if (!noFd) PeerFd.RequireEventFd(m.Fd(0), $"{req} for vring {v.Index}");
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
        _log.LogInformation("vring {Index} stopped (GET_VRING_BASE): base 0x{Base:x}", v.Index, v.Base);
        if (v.Unpublished is { Length: > 0 } u)
            _log.LogWarning("vring {Index}: GET_VRING_BASE with {Count} completions not yet published (their IOTLB miss could not be answered while the ring stopped): this back-end publishes them if it starts the ring again; a migration destination never sees them", v.Index, u.Length);
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
        var (offset, size, flags) = ConfigRequest.Parse(ref r, VhostRequest.GetConfig);
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
        PauseRings(() => _memory.Swap(pending));
        _log.LogInformation("memory table: {Regions}", _memory.Describe());
    }

    /// <summary>
    /// Stops every ring (each finishes its in-flight requests first, <see cref="IVirtioDevice{TMem}.QueueStopping"/>),
    /// applies <paramref name="change"/>, then starts every ring that can run, including one that waited for memory.
    /// </summary>
    private void PauseRings(Action change)
    {
        foreach (var v in _vrings) StopRing(v);
        change();
        foreach (var v in _vrings) TryStart(v);
    }

    /// <summary>As <see cref="PauseRings"/>, but only the rings that were running start again.</summary>
    private void PauseRunningRings(Action change)
    {
        var running = _vrings.Where(v => v.Started).ToList();
        foreach (var v in running) StopRing(v);
        change();
        foreach (var v in running) TryStart(v);
    }

    private void HandleIotlb(ref PayloadReader r)
    {
        var (iova, size, uaddr, perm, type) = IotlbRequest.Parse(ref r);
        _log.LogDebug("IOTLB {Type} iova 0x{Iova:x} size 0x{Size:x} uaddr 0x{Uaddr:x} perm {Perm}", type == IotlbMsgType.Update ? "UPDATE" : "INVALIDATE", iova, size, uaddr, perm);
        switch (type)
        {
            case IotlbMsgType.Update: _iotlb.Update(iova, size, uaddr, perm); break;
            case IotlbMsgType.Invalidate:
                _iotlb.Invalidate(iova, size);
                // Storage I/O translated before the invalidation may still be moving data through the old mapping:
                // the front-end hears back (REPLY_ACK) only once it is done, so an unmap it makes next is safe.
                // A ring worker stuck on an IOTLB miss cannot reap its I/O, and the front-end answers the miss only
                // after this confirmation: waiting then would deadlock (QEMU blocks on the REPLY_ACK), so it stops.
                if (!_host.DirectIo.Wait(_options.DirectIoFenceTimeout, () => _iotlb.MissPending))
                {
                    if (_iotlb.MissPending)
                        _log.LogDebug("IOTLB invalidate iova 0x{Iova:x}: confirmed unfenced, a ring waits for an IOTLB miss", iova);
                    else
                        _log.LogWarning("IOTLB invalidate iova 0x{Iova:x}: storage I/O begun before it is still running after {Timeout} s; confirming anyway", iova, _options.DirectIoFenceTimeout.TotalSeconds);
                }
                break;
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

    // vhost-user.rst, GET/SET_INFLIGHT_FD: only "when VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD has been negotiated".
    private void ExpectInflightNegotiated(VhostRequest req)
    {
        if (Has(VhostProtocolFeature.InflightShmfd)) return;
        if ((OfferedProtocolFeatures & Bit(VhostProtocolFeature.InflightShmfd)) == 0)
            throw new VhostProtocolException($"{req}: this device offers no inflight tracking (INFLIGHT_SHMFD): its requests cannot be resubmitted");
        throw new VhostProtocolException($"{req} before INFLIGHT_SHMFD was negotiated: set that protocol feature (SET_PROTOCOL_FEATURES) first");
    }

    private void GetInflightFd(ref PayloadReader r)
    {
        ExpectInflightNegotiated(VhostRequest.GetInflightFd);
        ExpectRingsStopped(VhostRequest.GetInflightFd);
        var (_, _, queues, queueSize) = InflightDescription.Parse(ref r);
        // QEMU sends SET_FEATURES before this message, so the ring layout (and with it the region layout) is known.
        var (fd, size) = _inflight.Create(_vrings.Length, queues, queueSize, _device.MaxQueueSize, Packed);
        Span<byte> b = stackalloc byte[InflightDescription.WireSize];
        new InflightDescription(size, 0, queues, queueSize).Write(b);
        Reply(VhostRequest.GetInflightFd, b, [fd]);
    }

    private void SetInflightFd(ref PayloadReader r, in VhostMessage m)
    {
        ExpectInflightNegotiated(VhostRequest.SetInflightFd);
        var (size, offset, queues, queueSize) = InflightDescription.Parse(ref r);
        m.ExpectFds(1);
        ExpectRingsStopped(VhostRequest.SetInflightFd);
        if (!PeerFd.RequireSharedMemory(m.Fd(0), "SET_INFLIGHT_FD", _options.AllowUnsealedMemory))
            _log.LogWarning("SET_INFLIGHT_FD: the inflight region is not sealed against shrinking (accepted by --allow-unsealed-memory)");
        _inflight.Restore(m.Fd(0), size, offset, _vrings.Length, queues, queueSize, _device.MaxQueueSize, Packed);
        m.Keep(m.Fd(0));
        _log.LogInformation("inflight region restored: {Queues} queues of {Size}", queues, queueSize);
    }

    private void TryStart(Vring v)
    {
        if (v.Started || v.Kick is null || !v.Enabled || !v.AddrSet || v.Num == 0 || _memory.Table is not { } mem || !_featuresSet) return;
        if (_host.NeedsResetReason is not null) return;
        // Size and base were checked against the layout of their time; SET_FEATURES may have switched it since.
        if (!SplitRingLayout.IsValidSize(v.Num, Packed) || (!Packed && v.Base > 0xFFFF))
        {
            Fail(v.Index, $"vring {v.Index}: size {v.Num} / base 0x{v.Base:x} do not fit a {(Packed ? "packed" : "split")} ring (features changed after they were set)");
            return;
        }
        // Activation (implied DRIVER_OK) happens here, on the control thread; the worker builds its own queue.
        if (!_host.EnsureActivated()) { Fail(v.Index, $"vring {v.Index}: the device could not be activated"); return; }
        ulong features = _features;
        string space = VirtioFeature.Has(features, VirtioFeature.AccessPlatform) ? "IOVA via IOTLB" : "guest-physical";
        v.Start(_host, ring =>
        {
            var q = VringRecovery.Prepare(ring, mem, features, _iotlb, _dirtyLog.Log, _inflight, _log, _stats, out bool signal, out string position, out string? failure);
            if (signal) Interlocked.Increment(ref _stats.Interrupts);
            return new Vring.Prepared(q, signal, $"{position}, {space}", failure);
        }, _log, _pollTicks);
    }

    private void StopRing(Vring v)
    {
        if (!v.Started) return;
        v.Stop();
        var q = v.Queue;
        if (q is not null)
        {
            v.Base = VringBase.Encode(q.Position, q.IsPacked);
            // Uses a pause cut short (an IOTLB miss outstanding) wait for the ring's next start, right after the base.
            v.Unpublished = q.UnpublishedUsed;
            if (v.Unpublished is { Length: > 0 } u)
                _log.LogInformation("vring {Index}: {Count} completed requests wait to be published when the ring starts again (their used entries' IOTLB miss was cut short by the pause)", v.Index, u.Length);
        }
        _host.StopQueue(v.Index);
        // Cleared before its count moves to the totals, so a reader (RingCounters) never counts it twice.
        Volatile.Write(ref v.Queue, null);
        if (q is not null) Interlocked.Add(ref _stats.InterruptsSuppressed, q.SuppressedInterrupts);
        Interlocked.Add(ref _stats.Kicks, Interlocked.Exchange(ref v.Kicks, 0));
        Interlocked.Add(ref _stats.Polled, Interlocked.Exchange(ref v.Polled, 0));
    }

    private void Fail(int queue, string why) => _host.SetNeedsReset(why, queue);

    /// <summary>
    /// RESET_DEVICE / RESET_OWNER, or SET_STATUS 0 (<paramref name="keepRingPositions"/>): QEMU writes status 0 when it
    /// stops the device and only then asks each ring's position with GET_VRING_BASE, which a live migration carries to
    /// the destination (and a stop/cont resends with SET_VRING_BASE), so that reset keeps the positions the stopped
    /// rings reached, every in-flight request completed.
    /// </summary>
    private void ResetDevice(bool keepRingPositions = false)
    {
        foreach (var v in _vrings)
        {
            StopRing(v);
            if (!keepRingPositions) { v.Base = 0; v.Unpublished = null; }
            v.Enabled = false;
        }
        // The inflight region described the old device; after a reset the front-end sends a new one (QEMU does).
        _inflight.Forget();
        _host.Reset();
        _features = 0;
        _featuresSet = false;
        _logAll = false;
        _dirtyLog.SetEnabled(false);
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
        _sock.Send(m, fds, VhostUserBackendOptions.Milliseconds(_options.ReplyTimeout));
    }

    /// <summary>Ends the connection from another thread: the message loop sees EOF and returns.</summary>
    public void Abort() => _sock.Shutdown();

    /// <summary>This connection's dirty-log counters: pages marked, pages beyond the log's end.</summary>
    public (long Pages, long OutOfRange) DirtyLogCounters => (_dirtyLog.Log.PagesMarked, _dirtyLog.Log.OutOfRange);

    /// <summary>This connection's IOTLB counters.</summary>
    public (long Hits, long Misses, long Updates, long Invalidations) IotlbCounters =>
        (Interlocked.Read(ref _iotlb.Hits), Interlocked.Read(ref _iotlb.Misses), Interlocked.Read(ref _iotlb.Updates), Interlocked.Read(ref _iotlb.Invalidations));

    /// <summary>Kicks and polled rounds of the running rings, not yet added to the server's <see cref="VhostStats"/> (that happens when a ring stops).</summary>
    internal (long Kicks, long Polled, long Suppressed) RingCounters
    {
        get
        {
            long kicks = 0, polled = 0, suppressed = 0;
            foreach (var v in _vrings)
            {
                kicks += Interlocked.Read(ref v.Kicks);
                polled += Interlocked.Read(ref v.Polled);
                suppressed += Volatile.Read(ref v.Queue)?.SuppressedInterrupts ?? 0;
            }
            return (kicks, polled, suppressed);
        }
    }

    /// <summary>Stops every ring, resets the device and releases everything the connection held; the inflight memfd is kept by QEMU.</summary>
    public void Dispose()
    {
        foreach (var v in _vrings) StopRing(v);
        _host.Reset();
        foreach (var v in _vrings) v.Dispose();
        _memory.Dispose();
        _channel.Dispose();
        _inflight.Dispose();
        _dirtyLog.Dispose();
        _sock.Dispose();
    }
}
