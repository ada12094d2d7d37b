using VirtioSharp.Devices;
using VirtioSharp.Memory;
using VirtioSharp.Spec;

namespace VirtioSharp.Testing;

/// <summary>
/// A device model that passes everything to a real one unless a test overrides a piece: refuse features, claim fewer
/// queues, replace the queue handler (to misbehave on the rings). The activated context is kept for the test.
/// </summary>
/// <param name="inner">The device everything not overridden goes to.</param>
public sealed class DelegatingDevice<TMem>(IVirtioDevice<TMem> inner) : IVirtioDevice<TMem> where TMem : struct, IDeviceMemory
{
    /// <summary>The wrapped device.</summary>
    public IVirtioDevice<TMem> Inner { get; } = inner;
    /// <summary>Returns a reason to refuse the driver's features (FEATURES_OK stays clear), or null to accept.</summary>
    public Func<ulong, string?>? RejectFeatures { get; set; }
    /// <summary>Replaces the device's queue count when set.</summary>
    public int? QueueCountOverride { get; set; }
    /// <summary>Replaces the device's largest queue size when set.</summary>
    public ushort? MaxQueueSizeOverride { get; set; }
    /// <summary>Replaces the real device's queue handling.</summary>
    public Action<DeviceContext<TMem>, int>? OnNotify { get; set; }
    /// <summary>The context of the current activation, or null before activation and after reset.</summary>
    public DeviceContext<TMem>? Context { get; private set; }
    /// <summary>Queue notifications seen (counted on owner threads; read it while the device is quiet).</summary>
    public int Notifies { get; private set; }
    /// <summary>Resets seen.</summary>
    public int Resets { get; private set; }

    /// <summary>The inner device's type.</summary>
    public DeviceId DeviceId => Inner.DeviceId;
    /// <summary>The inner device's features.</summary>
    public ulong DeviceFeatures => Inner.DeviceFeatures;
    /// <summary><see cref="QueueCountOverride"/>, or the inner device's count.</summary>
    public int QueueCount => QueueCountOverride ?? Inner.QueueCount;
    /// <summary><see cref="MaxQueueSizeOverride"/>, or the inner device's size.</summary>
    public ushort MaxQueueSize => MaxQueueSizeOverride ?? Inner.MaxQueueSize;
    /// <summary>The inner device's config size.</summary>
    public int ConfigSize => Inner.ConfigSize;
    /// <inheritdoc/>
    public DeviceCapabilities Capabilities => Inner.Capabilities;
    /// <summary>Reads the inner device's config.</summary>
    public void ReadConfig(int offset, Span<byte> destination) => Inner.ReadConfig(offset, destination);
    /// <summary>Writes the inner device's config.</summary>
    public void WriteConfig(int offset, ReadOnlySpan<byte> source) => Inner.WriteConfig(offset, source);

    /// <summary>Refuses with <see cref="RejectFeatures"/>'s reason if it gives one, else asks the inner device.</summary>
    public bool AcceptFeatures(ulong features, out string? reason)
    {
        reason = RejectFeatures?.Invoke(features);
        return reason is null && Inner.AcceptFeatures(features, out reason);
    }

    /// <summary>Keeps <paramref name="context"/> in <see cref="Context"/> and activates the inner device.</summary>
    public void Activate(DeviceContext<TMem> context)
    {
        Context = context;
        Inner.Activate(context);
    }

    /// <summary>Counts the notify and runs <see cref="OnNotify"/> if set, else the inner device's handling.</summary>
    public void QueueNotify(int queue)
    {
        Notifies++;
        if (OnNotify is { } f) f(Context!, queue);
        else Inner.QueueNotify(queue);
    }

    /// <summary>Counts the reset, drops <see cref="Context"/> and resets the inner device.</summary>
    public void Reset()
    {
        Resets++;
        Context = null;
        Inner.Reset();
    }
}
