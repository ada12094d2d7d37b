using Microsoft.Extensions.Logging;
using VirtioSharp.Devices;
using VirtioSharp.Memory;

namespace VirtioSharp.Cli.Daemon;

/// <summary>
/// What a `vhost-user-&lt;device&gt;` command hands the shared daemon: the device model, a line for the start-up log, its
/// counters for the stats lines (key, value; keys are kebab-case), what to release at exit, and a hook that gets the
/// daemon's logger before serving starts (for device messages, e.g. fault injection's), and what SIGHUP does (e.g.
/// re-read an image's size), and the device's metrics (a Meter, disposed at exit). <see cref="Devices"/>: one device per
/// socket when the command serves several (e.g. the ports of a switch); then <see cref="Device"/> is the first.
/// </summary>
internal sealed record DaemonDevice(
    IVirtioDevice<DeviceMemory<TranslatorRef, RamPort>> Device,
    string Description,
    Func<IEnumerable<(string Key, long Value)>> Counters,
    IDisposable? Resource = null,
    Action<ILogger>? UseLog = null,
    Action? OnHangup = null,
    IDisposable? Metrics = null,
    IReadOnlyList<IVirtioDevice<DeviceMemory<TranslatorRef, RamPort>>>? Devices = null);
