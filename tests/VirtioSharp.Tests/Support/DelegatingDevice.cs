using VirtioSharp.Devices;
using VirtioSharp.Memory;
using VirtioSharp.Spec;

namespace VirtioSharp.Tests.Support;

/// <summary>
/// A device model that passes everything to a real one unless a test overrides a piece: refuse features, claim fewer
/// queues, replace the queue handler (to misbehave on the rings). The activated context is kept for the test.
/// </summary>
public sealed class DelegatingDevice<TMem>(IVirtioDevice<TMem> inner) : IVirtioDevice<TMem> where TMem : struct, IDeviceMemory
{
    public IVirtioDevice<TMem> Inner { get; } = inner;
    /// <summary>Returns a reason to refuse the driver's features (FEATURES_OK stays clear), or null to accept.</summary>
    public Func<ulong, string?>? RejectFeatures { get; set; }
    public int? QueueCountOverride { get; set; }
    public ushort? MaxQueueSizeOverride { get; set; }
    /// <summary>Replaces the real device's queue handling.</summary>
    public Action<DeviceContext<TMem>, int>? OnNotify { get; set; }
    public DeviceContext<TMem>? Context { get; private set; }
    public int Notifies { get; private set; }
    public int Resets { get; private set; }

    public DeviceId DeviceId => Inner.DeviceId;
    public ulong DeviceFeatures => Inner.DeviceFeatures;
    public int QueueCount => QueueCountOverride ?? Inner.QueueCount;
    public ushort MaxQueueSize => MaxQueueSizeOverride ?? Inner.MaxQueueSize;
    public int ConfigSize => Inner.ConfigSize;
    public void ReadConfig(int offset, Span<byte> destination) => Inner.ReadConfig(offset, destination);
    public void WriteConfig(int offset, ReadOnlySpan<byte> source) => Inner.WriteConfig(offset, source);

    public bool AcceptFeatures(ulong features, out string? reason)
    {
        reason = RejectFeatures?.Invoke(features);
        return reason is null && Inner.AcceptFeatures(features, out reason);
    }

    public void Activate(DeviceContext<TMem> context)
    {
        Context = context;
        Inner.Activate(context);
    }

    public void QueueNotify(int queue)
    {
        Notifies++;
        if (OnNotify is { } f) f(Context!, queue);
        else Inner.QueueNotify(queue);
    }

    public void Reset()
    {
        Resets++;
        Context = null;
        Inner.Reset();
    }
}
