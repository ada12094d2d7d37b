using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Spec.Net;

namespace VirtioSharp.Devices.Net;

/// <summary>
/// An in-memory <see cref="INetPort"/> for simulations and tests: frames the driver sends are kept (<see cref="Sent"/>),
/// or looped back to its receive queue with <c>loopback</c>; <see cref="Inject"/> delivers frames to the driver. It
/// allocates a buffer per frame: not for measuring a packet rate.
/// </summary>
public sealed class MemoryNetPort(bool loopback = false, ulong offloadFeatures = MemoryNetPort.AllOffloads) : INetPort
{
    /// <summary>Every offload bit: the port stores headers as they are.</summary>
    public const ulong AllOffloads =
        1UL << NetFeature.Csum | 1UL << NetFeature.GuestCsum | 1UL << NetFeature.GuestTso4 | 1UL << NetFeature.GuestTso6 |
        1UL << NetFeature.GuestEcn | 1UL << NetFeature.GuestUfo | 1UL << NetFeature.HostTso4 | 1UL << NetFeature.HostTso6 |
        1UL << NetFeature.HostEcn | 1UL << NetFeature.HostUfo;

    private readonly ConcurrentQueue<(VirtioNetHdr Header, byte[] Frame)> _inbound = new();
    private volatile Action? _wake;
    private long _lost;

    /// <summary>Frames the driver transmitted (not looped back), with their headers, in order.</summary>
    public ConcurrentQueue<(VirtioNetHdr Header, byte[] Frame)> Sent { get; } = new();
    /// <summary>Frames waiting for the driver's receive buffers.</summary>
    public int Waiting => _inbound.Count;
    /// <summary>Frames dropped because the receive buffers offered could not hold them.</summary>
    public long Lost => Interlocked.Read(ref _lost);
    /// <summary>The features the driver accepted, as last told by the device.</summary>
    public ulong Offloads { get; private set; }

    /// <inheritdoc/>
    public ulong OffloadFeatures => offloadFeatures;
    /// <inheritdoc/>
    public SafeHandle? ReadableHandle => null;
    /// <inheritdoc/>
    public void SetReceiveWakeup(Action? wake) => _wake = wake;
    /// <inheritdoc/>
    public void SetOffloads(ulong features) => Offloads = features;

    /// <summary>Any thread: a frame for the driver.</summary>
    public void Inject(ReadOnlySpan<byte> frame, VirtioNetHdr header = default)
    {
        _inbound.Enqueue((header, frame.ToArray()));
        _wake?.Invoke();
    }

    /// <inheritdoc/>
    public unsafe bool Transmit(in VirtioNetHdr header, ReadOnlySpan<IoVec> frame)
    {
        long n = 0;
        foreach (var v in frame) n += (long)v.Length;
        var copy = new byte[n];
        int at = 0;
        foreach (var v in frame)
        {
            new ReadOnlySpan<byte>((void*)v.Base, (int)v.Length).CopyTo(copy.AsSpan(at));
            at += (int)v.Length;
        }
        if (loopback) Inject(copy, header with { NumBuffers = 0 });
        else Sent.Enqueue((header, copy));
        return true;
    }

    /// <inheritdoc/>
    public unsafe int Receive(ReadOnlySpan<IoVec> destination, out VirtioNetHdr header)
    {
        header = default;
        if (!_inbound.TryDequeue(out var f)) return 0;
        long room = 0;
        foreach (var v in destination) room += (long)v.Length;
        if (f.Frame.Length > room) { Interlocked.Increment(ref _lost); return -1; }
        int at = 0;
        foreach (var v in destination)
        {
            if (at == f.Frame.Length) break;
            int n = (int)Math.Min((long)v.Length, f.Frame.Length - at);
            f.Frame.AsSpan(at, n).CopyTo(new Span<byte>((void*)v.Base, n));
            at += n;
        }
        header = f.Header;
        return f.Frame.Length;
    }
}
